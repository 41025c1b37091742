package daemon

import (
	"io"
	"sync"
)

// maxPendingLog bounds the log lines queued behind a write in progress; past
// it, loggers wait as they would on a plain mutex (a stalled stderr pipe must
// slow the daemon down, not grow its memory).
const maxPendingLog = 256 << 10

// groupWriter serialises log lines onto w with group commit: a line that
// arrives while another goroutine's write(2) is in progress is queued, and
// that goroutine writes everything queued before it returns. Alone, a line
// is one write as before; under load one write carries the lines of many
// requests (policyd logs a line per request: a write each was a tenth of its
// CPU at eight connections). No line is held back: when every Write has
// returned, everything is written. Lines keep the order their Writes took
// the lock in and never interleave.
type groupWriter struct {
	mu      sync.Mutex
	drained sync.Cond // signalled when the queue is taken, for loggers waiting on a full one
	w       io.Writer
	writing bool   // a goroutine is writing and will drain pending
	pending []byte // lines queued meanwhile
	spare   []byte // the previous batch's buffer, reused
}

func newGroupWriter(w io.Writer) *groupWriter {
	g := &groupWriter{w: w}
	g.drained.L = &g.mu
	return g
}

// Write queues p behind a write in progress, or writes it and then whatever
// queued meanwhile. The error is the writer's own (a queued line's failure is
// reported to the goroutine that wrote it, as a log line's error is of no use
// to anyone but the handler anyway).
func (g *groupWriter) Write(p []byte) (int, error) {
	n := len(p)
	g.mu.Lock()
	for g.writing && len(g.pending) > 0 && len(g.pending)+len(p) > maxPendingLog {
		g.drained.Wait()
	}
	if g.writing {
		g.pending = append(g.pending, p...)
		g.mu.Unlock()
		return len(p), nil
	}
	g.writing = true
	if len(g.pending) > 0 {
		// Left by a writer that panicked (see below): they go first.
		g.pending = append(g.pending, p...)
		p = p[:0]
	}
	g.mu.Unlock()
	// If w.Write panics, the next Write takes over (and writes what queued
	// meanwhile); else every later line would queue behind a write that never
	// ends, and loggers block once the queue is full.
	finished := false
	defer func() {
		if !finished {
			g.mu.Lock()
			g.writing = false
			g.drained.Broadcast()
			g.mu.Unlock()
		}
	}()
	var err error
	if len(p) > 0 {
		_, err = g.w.Write(p)
	}
	g.mu.Lock()
	for len(g.pending) > 0 {
		batch := g.pending
		g.pending = g.spare[:0]
		g.drained.Broadcast()
		g.mu.Unlock()
		if _, werr := g.w.Write(batch); err == nil {
			err = werr
		}
		g.mu.Lock()
		if cap(batch) <= maxPendingLog*2 {
			g.spare = batch[:0]
		} else {
			g.spare = nil
		}
	}
	g.writing = false
	g.drained.Broadcast()
	g.mu.Unlock()
	finished = true
	if err != nil {
		return 0, err
	}
	return n, nil
}
