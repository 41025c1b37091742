package milter

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// flakyListener fails its first Accept calls the way a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: fmt.Errorf("accept4: %w", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Running out of file descriptors for a moment must not end the milter (and
// with it the whole dovetail process): Postfix would apply
// milter_default_action to every message until someone restarts it.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen.Address = "127.0.0.1:0"
	srv, err := New(cfg, &fakeScorer{}, slog.New(slog.NewTextHandler(&testenv.LogBuffer{}, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &flakyListener{Listener: inner}
	ln.fails.Store(2)
	var serveErr error
	done := make(chan struct{})
	go func() { serveErr = srv.Serve(ln); close(done) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}()

	c := gomilter.NewClientWithOptions("tcp", inner.Addr().String(), gomilter.ClientOptions{
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		select {
		case <-done:
			t.Fatalf("Serve returned %v after a temporary accept error", serveErr)
		default:
		}
		t.Fatal(err)
	}
	defer s.Close()
	act, err := s.Conn("client.test", gomilter.FamilyInet, 4321, "192.0.2.9")
	checkContinue(t, act, err)
	select {
	case <-done:
		t.Fatalf("Serve returned %v after a temporary accept error", serveErr)
	default:
	}
}
