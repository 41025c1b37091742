package testenv

import (
	"net"
	"strconv"
	"testing"
)

// occupy listens on a free port and makes freePort hand it out next, so the next
// server start hits EADDRINUSE and must retry with another port.
func occupy(t *testing.T) int {
	t.Helper()
	p := FreePort(t)
	l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	portMu.Lock()
	forcePorts = append(forcePorts, p)
	portMu.Unlock()
	return p
}

func TestRetryOnAddrInUse(t *testing.T) {
	t.Run("postfix", func(t *testing.T) {
		busy := occupy(t)
		p := StartPostfix(t, PostfixOptions{})
		if p.Port == busy {
			t.Fatalf("postfix got the busy port %d", busy)
		}
	})
	t.Run("dovecot", func(t *testing.T) {
		busy := occupy(t)
		d := StartDovecot(t, DovecotOptions{})
		if d.IMAPAddr == "127.0.0.1:"+strconv.Itoa(busy) {
			t.Fatalf("dovecot got the busy port %d", busy)
		}
	})
	t.Run("redis", func(t *testing.T) {
		Need(t, "redis-server")
		busy := occupy(t)
		r, err := startRedis()
		if err != nil {
			t.Fatal(err)
		}
		defer func() { r.stop(); removeDir(t, r.Dir) }()
		if r.Port == busy {
			t.Fatalf("redis got the busy port %d", busy)
		}
	})
	t.Run("slapd", func(t *testing.T) {
		Need(t, "slapd", "slapadd")
		busy := occupy(t)
		s, err := startSlapd()
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.stop(); removeDir(t, s.Dir) }()
		if s.Port == busy {
			t.Fatalf("slapd got the busy port %d", busy)
		}
	})
}
