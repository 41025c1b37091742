package policyd

import (
	"context"
	"sync"
	"time"
)

// requestContext bounds one request's checks by request_timeout without
// arming a timer unless something waits on it. Most requests never do (the
// local store answers from memory, lists are cached), and a timer context
// per request — allocation, timer, registration with the server's context —
// was several percent of policyd's CPU. The first Done creates the real
// deadline context; Deadline and Err are answered without one.
type requestContext struct {
	parent   context.Context
	deadline time.Time

	mu       sync.Mutex
	inner    context.Context // nil until first needed
	cancel   context.CancelFunc
	released bool
}

func newRequestContext(parent context.Context, deadline time.Time) *requestContext {
	return &requestContext{parent: parent, deadline: deadline}
}

// materialize returns the real context, creating it on first use.
func (c *requestContext) materialize() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		c.inner, c.cancel = context.WithDeadline(c.parent, c.deadline)
		if c.released {
			// Asked for after the request ended (by a goroutine a check
			// left behind): it is over, not running on to the deadline.
			c.cancel()
		}
	}
	return c.inner
}

func (c *requestContext) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *requestContext) Done() <-chan struct{} { return c.materialize().Done() }

func (c *requestContext) Err() error {
	c.mu.Lock()
	inner, released := c.inner, c.released
	c.mu.Unlock()
	if inner != nil {
		return inner.Err()
	}
	if released {
		return context.Canceled
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value asks the real context once there is one, so that context.Cause finds
// its cancellation and contexts derived from this one (a check's own shorter
// timeout) attach to it directly instead of each starting a goroutine to
// watch Done; before, nothing can have been cancelled but the parent.
func (c *requestContext) Value(key any) any {
	c.mu.Lock()
	inner := c.inner
	c.mu.Unlock()
	if inner != nil {
		return inner.Value(key)
	}
	return c.parent.Value(key)
}

// release ends the request: the deadline context, if one was made, is
// cancelled and let go; if none was, the context answers as a cancelled one
// from now on (Err, and Done, which then makes one already cancelled).
func (c *requestContext) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
	if c.cancel != nil {
		c.cancel()
	}
}
