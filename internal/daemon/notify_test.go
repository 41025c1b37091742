package daemon

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sdSocket listens where $NOTIFY_SOCKET points, as systemd does for a unit of
// Type=notify, and returns what arrives, one datagram a message.
func sdSocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	out := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(out)
				return
			}
			out <- string(buf[:n])
		}
	}()
	return out
}

func nextNotify(t *testing.T, c <-chan string) string {
	t.Helper()
	select {
	case m := <-c:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no sd_notify message")
		return ""
	}
}

// TestServiceManagerNotifications: READY=1 once the listeners answer,
// RELOADING=1 (with MONOTONIC_USEC for Type=notify-reload) and READY=1 again
// around a SIGHUP — with the outcome in STATUS= when the reload is refused —
// and STOPPING=1 at SIGTERM.
func TestServiceManagerNotifications(t *testing.T) {
	msgs := sdSocket(t)
	var mu sync.Mutex
	var fail error
	tr := newTestRuntime(t, func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return fail
	})
	tr.start(t)
	m := nextNotify(t, msgs)
	if !strings.Contains(m, "READY=1") || !strings.Contains(m, "STATUS=serving echo") {
		t.Fatalf("first message %q, want READY=1 and the daemons served", m)
	}
	conn, err := net.Dial("tcp", tr.rt.Units[0].Listener.Address)
	if err != nil {
		t.Fatalf("READY=1 sent before the listener answered: %v", err)
	}
	conn.Close()

	tr.sigs <- syscall.SIGHUP
	m = nextNotify(t, msgs)
	if !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("at SIGHUP: %q", m)
	}
	if m = nextNotify(t, msgs); !strings.Contains(m, "READY=1") || !strings.Contains(m, "reloaded") {
		t.Fatalf("after the reload: %q", m)
	}

	mu.Lock()
	fail = errors.New("policyd: bad\nthing")
	mu.Unlock()
	tr.sigs <- syscall.SIGHUP
	nextNotify(t, msgs) // RELOADING=1
	if m = nextNotify(t, msgs); !strings.Contains(m, "READY=1") || !strings.Contains(m, "STATUS=serving echo; reload failed, running the previous configuration: policyd: bad thing") {
		t.Fatalf("after a refused reload: %q", m)
	}

	tr.stop(t)
	if m = nextNotify(t, msgs); !strings.HasPrefix(m, "STOPPING=1") {
		t.Fatalf("at SIGTERM: %q", m)
	}
}
