package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// echoService answers each connection with "hi" and tracks in-flight work so the
// test can see two-phase shutdown wait for it.
type echoService struct {
	mu     sync.Mutex
	ln     net.Listener
	wg     sync.WaitGroup
	served int
}

func (s *echoService) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			time.Sleep(50 * time.Millisecond) // in-flight work
			c.Write([]byte("hi"))
			c.Close()
			s.mu.Lock()
			s.served++
			s.mu.Unlock()
		}()
	}
}

func (s *echoService) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestListenUnixMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "s.sock")
	ln, err := Listen(config.Listener{Address: "unix:" + path, Mode: "0660"})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("mode = %v, want 0660", fi.Mode().Perm())
	}
	// A live socket is not stolen; a stale one is replaced.
	if _, err := Listen(config.Listener{Address: "unix:" + path}); err == nil {
		t.Error("second Listen on a live socket succeeded")
	}
	ln.Close()
	os.WriteFile(path, nil, 0o600) // not a socket: must not be removed
	if _, err := Listen(config.Listener{Address: "unix:" + path}); err == nil {
		t.Error("Listen over a regular file succeeded")
	}
}

func TestRunServesAndDrains(t *testing.T) {
	svc := &echoService{}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	mln, _ := net.Listen("tcp", "127.0.0.1:0")
	maddr := mln.Addr().String()
	mln.Close()
	ready := make(chan struct{})
	rt := &Runtime{Units: []Unit{{Name: "echo", Listener: config.Listener{Address: addr}, Service: svc}}, MetricsAddr: maddr, Grace: 2 * time.Second, Ready: ready}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + maddr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	cancel() // shutdown while the connection is in flight
	b, _ := io.ReadAll(c)
	if string(b) != "hi" {
		t.Errorf("in-flight request got %q, want hi", b)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("still accepting after shutdown")
	}
}
