package policyd

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

func TestRequestContext(t *testing.T) {
	t.Run("deadline passes without anyone waiting", func(t *testing.T) {
		ctx := newRequestContext(context.Background(), time.Now().Add(20*time.Millisecond))
		defer ctx.release()
		if err := ctx.Err(); err != nil {
			t.Fatalf("Err before the deadline = %v", err)
		}
		if d, ok := ctx.Deadline(); !ok || time.Until(d) > 20*time.Millisecond {
			t.Fatalf("Deadline = %v, %v", d, ok)
		}
		time.Sleep(30 * time.Millisecond)
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err after the deadline = %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			t.Fatal("Done not closed after the deadline")
		}
	})
	t.Run("waiter woken at the deadline", func(t *testing.T) {
		ctx := newRequestContext(context.Background(), time.Now().Add(20*time.Millisecond))
		defer ctx.release()
		start := time.Now()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done never closed")
		}
		if time.Since(start) < 15*time.Millisecond || !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			t.Fatalf("after %s: Err %v, Cause %v", time.Since(start), ctx.Err(), context.Cause(ctx))
		}
	})
	t.Run("parent cancelled", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		ctx := newRequestContext(parent, time.Now().Add(time.Hour))
		defer ctx.release()
		cancel()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("Err = %v, want Canceled", ctx.Err())
		}
		<-ctx.Done()
	})
	t.Run("parent's sooner deadline", func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ctx := newRequestContext(parent, time.Now().Add(time.Hour))
		if d, _ := ctx.Deadline(); time.Until(d) > time.Minute {
			t.Fatalf("Deadline %v is past the parent's", d)
		}
	})
	t.Run("derived contexts hook on without a goroutine each", func(t *testing.T) {
		ctx := newRequestContext(context.Background(), time.Now().Add(30*time.Millisecond))
		before := runtime.NumGoroutine()
		var children []context.Context
		for range 50 {
			c, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			children = append(children, c)
		}
		if n := runtime.NumGoroutine() - before; n > 5 {
			t.Fatalf("%d goroutines for 50 derived contexts", n)
		}
		for _, c := range children {
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("derived context outlived the request's deadline")
			}
		}
		ctx.release()
	})
	t.Run("released before anything waited", func(t *testing.T) {
		// A goroutine a check left behind sees the request over: Err says
		// so, Done is closed (not a new timer running to the deadline), and
		// Cause agrees with Err.
		parent, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctx := newRequestContext(parent, time.Now().Add(time.Hour))
		ctx.release()
		if err := ctx.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err after release = %v, want Canceled", err)
		}
		if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Cause after release = %v, want Canceled", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			t.Fatal("Done after release is not closed")
		}
	})
	t.Run("release cancels what was made", func(t *testing.T) {
		ctx := newRequestContext(context.Background(), time.Now().Add(time.Hour))
		done := ctx.Done()
		ctx.release()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("release left the deadline context running")
		}
	})
}
