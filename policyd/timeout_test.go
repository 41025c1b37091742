package policyd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// waitStore blocks every Get until the request's context ends, as a store
// waiting on a dead backend does.
type waitStore struct {
	store.Store
	waiting chan struct{}
}

func (w *waitStore) Get(ctx context.Context, key string) ([]byte, error) {
	select {
	case w.waiting <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, ctx.Err())
}

// TestServerRequestTimeout: a check stuck past request_timeout answers a
// temporary action; a forced shutdown cancels checks in flight.
func TestServerRequestTimeout(t *testing.T) {
	cfg := greyConfig()
	cfg.Greylist.ExemptNetworks = nil
	cfg.RequestTimeout = config.Duration(100 * time.Millisecond)
	ts := startServer(t, cfg, Deps{Store: &waitStore{Store: mem.New()}})
	c := ts.dial(t)
	start := time.Now()
	if got := c.ask(); !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.3.0") {
		t.Fatalf("stuck check: %q", got)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 3*time.Second {
		t.Fatalf("answered after %v, want about request_timeout", took)
	}
	// The decision line is written just after the reply: poll briefly.
	for deadline := time.Now().Add(2 * time.Second); !strings.Contains(ts.logs.String(), "deadline exceeded"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("log does not say why:\n%s", ts.logs.String())
		}
	}

	cfg.RequestTimeout = config.Duration(time.Hour)
	ws := &waitStore{Store: mem.New(), waiting: make(chan struct{}, 1)}
	s, err := New(cfg, Deps{Store: ws, Log: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cl := &client{t: t, nc: nc, br: newBufReader(nc)}
	cl.send(encodeRequest())
	select {
	case <-ws.waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the store")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("forced shutdown took %v: the stuck check was not cancelled", took)
	}
}
