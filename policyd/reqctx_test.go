package policyd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

func newTestRequestContext(timeout time.Duration) (*requestContext, context.CancelFunc) {
	type key struct{}
	base, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	return newRequestContext(base, context.WithoutCancel(base), timeout, time.Now()), cancel
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestRequestContextDeadline(t *testing.T) {
	// Err alone notices the deadline; Done asked for afterwards is closed.
	c, cancelBase := newTestRequestContext(30 * time.Millisecond)
	defer cancelBase()
	if d, ok := c.Deadline(); !ok || time.Until(d) > 30*time.Millisecond {
		t.Fatalf("Deadline = %v, %v", d, ok)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err before the deadline: %v", err)
	}
	time.Sleep(40 * time.Millisecond)
	if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err after the deadline: %v", err)
	}
	if !isClosed(c.Done()) {
		t.Fatal("Done not closed after the deadline")
	}
	if err := context.Cause(c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Cause = %v", err)
	}
	c.release()
	if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("release changed Err to %v", err)
	}

	// Done asked for first closes at the deadline by itself, and a derived
	// context follows.
	c, cancelBase = newTestRequestContext(30 * time.Millisecond)
	defer cancelBase()
	done := c.Done()
	child, cancelChild := context.WithTimeout(c, time.Hour)
	defer cancelChild()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed at the deadline")
	}
	if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err = %v", err)
	}
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("derived context not cancelled")
	}
	if err := child.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("derived Err = %v", err)
	}
}

func TestRequestContextCancel(t *testing.T) {
	// The base's cancellation (Shutdown giving up), with and without Done.
	c, cancelBase := newTestRequestContext(time.Hour)
	done := c.Done()
	cancelBase()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed when base was cancelled")
	}
	if err := c.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err = %v", err)
	}
	c, cancelBase = newTestRequestContext(time.Hour)
	cancelBase()
	if err := c.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err without Done = %v", err)
	}

	// release ends the request, before or after Done; twice is harmless.
	c, cancelBase = newTestRequestContext(time.Hour)
	defer cancelBase()
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	c.release()
	c.release()
	if err := c.Err(); !errors.Is(err, context.Canceled) || !isClosed(c.Done()) {
		t.Fatalf("after release: Err %v, Done closed %v", err, isClosed(c.Done()))
	}
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("derived context not cancelled by release")
	}
	c, cancelBase = newTestRequestContext(time.Hour)
	defer cancelBase()
	c.release()
	if !isClosed(c.Done()) || c.Err() == nil {
		t.Fatal("Done after release not closed")
	}
	if v := c.Value(struct{}{}); v != nil {
		t.Fatalf("Value of an unknown key = %v", v)
	}
}

func TestRequestContextValues(t *testing.T) {
	type key struct{}
	base, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	defer cancel()
	c := newRequestContext(base, context.WithoutCancel(base), time.Hour, time.Now())
	defer c.release()
	if got := c.Value(key{}); got != "v" {
		t.Fatalf("Value = %v", got)
	}
}

// TestRequestContextConcurrent exercises Done, Err and the ends from several
// goroutines at once (for the race detector).
func TestRequestContextConcurrent(t *testing.T) {
	for range 200 {
		c, cancelBase := newTestRequestContext(time.Duration(len("x")) * time.Microsecond)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch i {
				case 0:
					<-c.Done()
				case 1:
					for c.Err() == nil {
					}
				case 2:
					c.release()
				case 3:
					cancelBase()
				}
			}()
		}
		wg.Wait()
		if c.Err() == nil || !isClosed(c.Done()) {
			t.Fatal("not ended")
		}
	}
}

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
