package lmtpd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
)

// go-smtp (v0.25) has no option for two things lmtpd must do on the wire, so
// the connections it serves are wrapped to do them:
//
//   - LHLO advertises SIZE max_message_size. go-smtp advertises its
//     MaxMessageBytes, which is one byte more (see New: its DATA reader refuses
//     a message of exactly its limit). The SIZE keyword is what Postfix takes
//     as our limit (RFC 1870: the largest message accepted), so it is rewritten.
//   - A BDAT chunk cut short by the client's disconnect is not a message. go-smtp
//     copies the chunk with io.Copy, which takes an EOF from the connection for
//     the chunk's end: a last chunk cut short reaches LMTPData as a complete
//     message, and the client, which saw no reply, sends it again. A BDAT chunk
//     is read to its announced size and no further, so the connection's read
//     side only ends within one that is cut short (a DATA message cut short
//     fails in go-smtp's reader already); LMTPData asks readEnded.

// errCutShort is a message whose connection ended before all of it came.
var errCutShort = errors.New("lmtpd: connection closed before the end of the message")

// wireListener wraps each connection it accepts in a wireConn.
type wireListener struct {
	net.Listener
	maxSize int64 // max_message_size; go-smtp advertises one more
}

func (l *wireListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: c,
		sizeFrom: fmt.Appendf(nil, "SIZE %d\r\n", l.maxSize+1),
		sizeTo:   fmt.Appendf(nil, "SIZE %d\r\n", l.maxSize)}, nil
}

// wireConn is a connection as go-smtp serves it (see above).
type wireConn struct {
	net.Conn
	sizeFrom, sizeTo []byte // LHLO's SIZE keyword as go-smtp writes it, as lmtpd means it
	ended            atomic.Bool
}

// Write rewrites the SIZE line of the LHLO reply ("250-SIZE n" or "250 SIZE n";
// go-smtp writes each reply line with one Write). No other reply has a line of
// that form: all but the greeting, LHLO and 354 carry an enhanced status code.
func (c *wireConn) Write(p []byte) (int, error) {
	if len(p) == 4+len(c.sizeFrom) && bytes.HasPrefix(p, []byte("250")) && bytes.Equal(p[4:], c.sizeFrom) {
		line := append(append(make([]byte, 0, 4+len(c.sizeTo)), p[:4]...), c.sizeTo...)
		if _, err := c.Conn.Write(line); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.ended.Store(true)
	}
	return n, err
}

// readEnded reports whether a read from the client failed (EOF, reset, timeout).
func (c *wireConn) readEnded() bool { return c.ended.Load() }
