package milter

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// spillScorer builds messages that spill to dir past 4 KiB.
type spillScorer struct {
	fakeScorer
	dir string
}

func (s *spillScorer) NewBuilder() *message.Builder {
	return message.NewBuilder(message.Limits{SpillThreshold: 4 << 10, TempDir: s.dir})
}

// connDialer keeps the connection it dials, so a test can drop it.
type connDialer struct{ conn net.Conn }

func (d *connDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.Dial(network, addr)
	d.conn = c
	return c, err
}

// An MTA that goes away mid-message without ABORT (smtpd killed, a milter
// timeout on its side, a network drop) must not leave the message's spill
// file open (its disk space held): go-milter calls no backend method when a
// connection ends.
func TestDroppedConnectionRemovesSpill(t *testing.T) {
	dir := t.TempDir()
	h := startScorer(t, &spillScorer{dir: dir}, nil)
	d := &connDialer{}
	c := gomilter.NewClientWithOptions("tcp", h.addr, gomilter.ClientOptions{
		Dialer: d, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	act, err := s.Conn("client.test", gomilter.FamilyInet, 4321, "192.0.2.9")
	checkContinue(t, act, err)
	act, err = s.Mail("sender@remote.test", nil)
	checkContinue(t, act, err)
	act, err = s.Rcpt("alice@example.test", nil)
	checkContinue(t, act, err)
	act, err = s.HeaderField("Subject", " big")
	checkContinue(t, act, err)
	act, err = s.HeaderEnd()
	checkContinue(t, act, err)
	chunk := []byte(strings.Repeat("x", 1000) + "\r\n")
	for range 20 {
		act, err = s.BodyChunk(chunk)
		checkContinue(t, act, err)
	}
	// Spill files are unlinked when made, so what a dropped session would
	// leak is the open descriptor (and the disk space behind it): count this
	// process's descriptors on files in dir.
	spilled := func() []string {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			testenv.SkipOrFail(t, "no /proc/self/fd: %v", err)
		}
		var open []string
		for _, fd := range fds {
			if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
				open = append(open, target)
			}
		}
		return open
	}
	if len(spilled()) != 1 {
		t.Fatalf("spill files open before the drop: %v", spilled())
	}
	d.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(spilled()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spill file still open after the MTA dropped the connection: %v", spilled())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
