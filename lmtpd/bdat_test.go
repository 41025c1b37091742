package lmtpd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/lmtpd/maildir"
)

// CHUNKING is advertised (go-smtp always does). A BDAT transaction that the
// client abandons (RSET, a disconnect) ends LMTPData in go-smtp's BDAT
// goroutine while the connection goroutine resets the session and the next
// transaction begins: the state LMTPData works on must not be the one Reset,
// MAIL and RCPT change (a data race, and a nil Deliverer panic that go-smtp
// logs as "panic serving"), and nothing of the abandoned message is stored.
//
// Each abandoned BDAT gets a connection of its own: go-smtp itself races on
// its dataResult channel when a second BDAT follows an abandoned one on the
// same connection.
func TestBDATAbortedWhileSessionResets(t *testing.T) {
	e := newEnv(t, nil)
	const n = 10
	for i := 0; i < n; i++ {
		v := e.dial()
		if r := v.cmd("MAIL FROM:<s@example.net>"); !strings.HasPrefix(r, "250") {
			t.Fatalf("MAIL: %s", r)
		}
		if r := v.cmd("RCPT TO:<alice@example.com>"); !strings.HasPrefix(r, "250") {
			t.Fatalf("RCPT: %s", r)
		}
		chunk := "Subject: part\r\n\r\nhalf"
		fmt.Fprintf(v.c, "BDAT %d\r\n%s", len(chunk), chunk)
		if r := v.reply(); !strings.HasPrefix(r, "250") {
			t.Fatalf("BDAT: %s", r)
		}
		if r := v.cmd("RSET"); !strings.HasPrefix(r, "250") {
			t.Fatalf("RSET: %s", r)
		}
		// The next transaction on the connection is delivered normally.
		_, d := v.send("s@example.net", []string{"alice@example.com", "carol@example.com"}, "Subject: whole\n\nbody\n")
		if len(d) != 2 || !strings.HasPrefix(d[0], "250 2.0.0 <alice@example.com>") || !strings.HasPrefix(d[1], "250 2.0.0 <carol@example.com>") {
			t.Fatalf("DATA after an abandoned BDAT: %q", d)
		}
		v.c.Close()
	}
	time.Sleep(50 * time.Millisecond)
	if fs := files(t, filepath.Join(e.dir, "alice/Maildir/new")); len(fs) != n {
		t.Fatalf("want only the %d complete messages stored, got %d", n, len(fs))
	}
	for _, f := range files(t, filepath.Join(e.dir, "alice/Maildir/tmp")) {
		t.Errorf("left in tmp/: %s", f)
	}
}

// blockingWriter holds every Maildir write until release is closed, telling
// started about each (a delivery that is still running).
type blockingWriter struct {
	w       io.Writer
	started chan<- struct{}
	release <-chan struct{}
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	select {
	case b.started <- struct{}{}:
	default:
	}
	<-b.release
	return b.w.Write(p)
}

// TestSlotHeldUntilDeliveryEnds: a client that closes its connection while
// its message is being delivered (DATA, or BDAT whose LMTPData runs on a
// goroutine of go-smtp's) keeps its max_connections slot until the delivery
// ends: the slot is what bounds the messages held in memory.
func TestSlotHeldUntilDeliveryEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(v *conv, msg string)
	}{
		{"DATA", func(v *conv, msg string) {
			v.cmd("DATA")
			io.WriteString(v.c, dataWire(msg))
		}},
		{"BDAT", func(v *conv, msg string) {
			fmt.Fprintf(v.c, "BDAT %d LAST\r\n%s", len(msg), msg)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started, release := make(chan struct{}, 1), make(chan struct{})
			e := newEnv(t, func(o *Options) {
				o.Config.MaxConnections = 1
				o.Maildir = &maildir.Options{WrapWriter: func(w io.Writer) io.Writer {
					return &blockingWriter{w: w, started: started, release: release}
				}}
			})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			defer unblock()
			v := e.dial()
			v.cmd("MAIL FROM:<s@example.net>")
			v.cmd("RCPT TO:<alice@example.com>")
			tc.send(v, "Subject: slot\r\n\r\nbody\r\n")
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("delivery did not start")
			}
			v.c.Close()
			time.Sleep(50 * time.Millisecond) // the server would see the close by now
			if g := greeting(t, e.addr); !strings.HasPrefix(g, "421 4.3.2 ") {
				t.Errorf("a connection while the only slot's delivery runs: %q, want 421 4.3.2", g)
			}
			unblock()
			deadline := time.Now().Add(5 * time.Second)
			for g := greeting(t, e.addr); !strings.HasPrefix(g, "220 "); g = greeting(t, e.addr) {
				if time.Now().After(deadline) {
					t.Fatalf("slot not given back after the delivery: %q", g)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if fs := files(t, filepath.Join(e.dir, "alice/Maildir/new")); len(fs) != 1 {
				t.Errorf("delivered %d copies, want 1", len(fs))
			}
		})
	}
}

// greeting is the first line a new connection to addr gets.
func greeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, _ := bufio.NewReader(c).ReadString('\n')
	return l
}

// TestBDATCutShortByDisconnectNotDelivered: a client that announces a last
// chunk and closes the connection before all of it came (Postfix killed, the
// link gone) has seen no reply, so it will send the message again: the part
// that came must not be delivered (go-smtp ends the chunk at the EOF as if it
// were complete). DATA gets this from go-smtp's reader (no final dot).
func TestBDATCutShortByDisconnectNotDelivered(t *testing.T) {
	e := newEnv(t, nil)
	v := e.dial()
	v.cmd("MAIL FROM:<s@example.net>")
	v.cmd("RCPT TO:<alice@example.com>")
	whole := "Subject: cut\r\n\r\n" + strings.Repeat("line of the body\r\n", 20)
	fmt.Fprintf(v.c, "BDAT %d LAST\r\n%s", len(whole), whole[:len(whole)/2])
	v.c.Close()
	time.Sleep(100 * time.Millisecond)
	for _, sub := range []string{"new", "tmp"} {
		if fs := files(t, filepath.Join(e.dir, "alice/Maildir", sub)); len(fs) != 0 {
			t.Errorf("half a message stored in %s/: %v", sub, fs)
		}
	}
	// The next connection delivers the whole message once.
	v = e.dial()
	v.cmd("MAIL FROM:<s@example.net>")
	v.cmd("RCPT TO:<alice@example.com>")
	fmt.Fprintf(v.c, "BDAT %d LAST\r\n%s", len(whole), whole)
	if r := v.reply(); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("BDAT: %q", r)
	}
	if fs := files(t, filepath.Join(e.dir, "alice/Maildir/new")); len(fs) != 1 {
		t.Errorf("%d messages stored, want 1", len(fs))
	}
}
