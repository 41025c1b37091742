package policyd

import (
	"context"
	"sync"
	"time"
)

// requestContext is the context a request's checks run under: what
// context.WithDeadline(base, deadline) gives, with its cost deferred until
// someone waits on it. WithDeadline arms a runtime timer, makes a channel and
// registers with base for every request (10-15 % of the daemon's own CPU per
// request); this context does all of that only when Done is first called (a
// store or DNS client about to block), and answers Err from the clock and base
// otherwise. The in-memory and write-behind stores only ever call Err.
//
// The Context contract holds: Err is nil until Done is closed and non-nil
// after (a deadline noticed by Err closes a Done already handed out); the
// error is DeadlineExceeded past the deadline, Canceled once base is cancelled
// (Shutdown giving up on in-flight requests) or the request ended (release).
// Values are base's. Contexts derived from it work as from any custom context
// (the context package watches Done with a goroutine).
type requestContext struct {
	base     context.Context // cancellation: Server.baseCtx
	values   context.Context // values: base without its cancellation (see Value)
	deadline time.Time

	mu    sync.Mutex
	done  chan struct{} // made by the first Done
	err   error
	timer *time.Timer // fires at deadline, once Done was asked for
	stop  func() bool // unregisters from base
}

func newRequestContext(base, values context.Context, timeout time.Duration, now time.Time) *requestContext {
	return &requestContext{base: base, values: values, deadline: now.Add(timeout)}
}

func (c *requestContext) Deadline() (time.Time, bool) { return c.deadline, true }

// Value answers from values, which is base under context.WithoutCancel:
// context.Cause must not find base's cancelCtx through this context, or it
// would report base's cause (none) for a request past its own deadline.
func (c *requestContext) Value(key any) any { return c.values.Value(key) }

func (c *requestContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.expiredLocked(); c.err != nil {
			close(c.done)
			return c.done
		}
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
		c.stop = context.AfterFunc(c.base, func() { c.cancel(context.Canceled) })
	}
	return c.done
}

func (c *requestContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.expiredLocked()
		if c.err != nil && c.done != nil {
			close(c.done)
			c.stopLocked()
		}
	}
	return c.err
}

// expiredLocked sets err when base was cancelled or the deadline passed.
func (c *requestContext) expiredLocked() {
	switch {
	case c.base.Err() != nil:
		c.err = context.Canceled
	case !time.Now().Before(c.deadline):
		c.err = context.DeadlineExceeded
	}
}

// cancel ends the context with err unless it has ended already.
func (c *requestContext) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		if c.done != nil {
			close(c.done)
		}
	}
	c.stopLocked()
}

func (c *requestContext) stopLocked() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
}

// release ends the request: like the CancelFunc of WithDeadline.
func (c *requestContext) release() { c.cancel(context.Canceled) }
