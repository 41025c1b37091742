package lmtpd

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Each LMTP session may hold a message of up to max_message_size in memory,
// so the number of sessions is bounded (lmtpd.max_connections, as Dovecot's
// lmtp process_limit): past it a new connection is answered 421 and closed,
// which Postfix takes as a temporary failure and retries, instead of lmtpd
// growing until the kernel kills it.

// limitListener hands out connections while fewer than max() are open
// (open is shared by every listener of the server).
type limitListener struct {
	net.Listener
	open     *atomic.Int64
	max      func() int // read per accept: a reload changes it
	refused  func()     // counts a refusal
	hostname string
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.open.Add(1); n > int64(l.max()) {
			l.open.Add(-1)
			l.refused()
			go refuse(c, l.hostname)
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.open.Add(-1) }}, nil
	}
}

// refuse answers 421 without waiting on the client for long.
func refuse(c net.Conn, hostname string) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("421 4.3.2 " + hostname + " Too many connections, try again later\r\n"))
	c.Close()
}

// limitedConn gives its slot back once, on the first Close. That is late
// enough: go-smtp's connection goroutine waits for LMTPData of a DATA or a
// last BDAT chunk before it reads again, so a client that disconnects while
// its message is delivered keeps the slot until the delivery ends
// (TestSlotHeldUntilDeliveryEnds); only Shutdown's Close comes earlier. An
// abandoned BDAT (RSET, or a disconnect before the last chunk) ends its
// LMTPData with ErrDataReset at the next read, holding no more than was read.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
