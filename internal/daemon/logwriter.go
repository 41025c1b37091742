package daemon

import (
	"io"
	"sync"
	"time"
)

const (
	// maxPendingLog bounds the log lines queued behind a write in progress;
	// past it, loggers wait as they would on a plain mutex (a stalled stderr
	// pipe must slow the daemon down, not grow its memory).
	maxPendingLog = 256 << 10
	// lingerBytes is how much a lingering LogWriter gathers before the line
	// that passes it is written at once.
	lingerBytes = 32 << 10
	// LogLinger is how long the daemons' log lines may wait for company
	// (NewLogWriter). Nobody watching a log sees 2 ms; a crash that is not a
	// clean stop may lose that much of it (warnings and errors are written at
	// once, FlushOnWarn). Measured with bench/policyd, one decision line per
	// request: 15 % less CPU per request and +20–25 % requests/s at one
	// connection, where a write(2) per line stood between a reply and reading
	// the next request (docs/benchmarks.md §policyd).
	LogLinger = 2 * time.Millisecond
)

// LogWriter serialises log lines onto w with group commit: a line that
// arrives while another goroutine's write(2) is in progress is queued, and
// that goroutine writes everything queued before it returns, so lines keep
// the order their Writes took the lock in and never interleave. With a
// linger, a line that finds no write in progress waits up to that long for
// others (or until lingerBytes gather) and they go out in one write; Flush
// writes what waits. Without one, no line is held back: when every Write has
// returned, everything is written.
type LogWriter struct {
	mu      sync.Mutex
	drained sync.Cond // signalled when the queue is taken and when a write ends
	w       io.Writer
	linger  time.Duration
	timer   *time.Timer // flushes lingering lines; armed while armed is set
	armed   bool
	writing bool   // a goroutine is writing and will drain pending
	pending []byte // lines queued meanwhile, or lingering
	spare   []byte // the previous batch's buffer, reused
}

// NewLogWriter returns a LogWriter onto w; linger 0 writes each line at once
// (or with the write in progress).
func NewLogWriter(w io.Writer, linger time.Duration) *LogWriter {
	g := &LogWriter{w: w, linger: linger}
	g.drained.L = &g.mu
	return g
}

// Write queues p behind a write in progress or lingers it; else it writes p
// and then whatever queued meanwhile. The error is the writer's own (a queued
// line's failure is reported to the goroutine that wrote it, as a log line's
// error is of no use to anyone but the handler anyway).
func (g *LogWriter) Write(p []byte) (int, error) {
	n := len(p)
	g.mu.Lock()
	for g.writing && len(g.pending) > 0 && len(g.pending)+len(p) > maxPendingLog {
		g.drained.Wait()
	}
	if g.writing {
		g.pending = append(g.pending, p...)
		g.mu.Unlock()
		return n, nil
	}
	if g.linger > 0 && len(g.pending)+len(p) < lingerBytes {
		g.pending = append(g.pending, p...)
		g.arm()
		g.mu.Unlock()
		return n, nil
	}
	g.writing = true
	if len(g.pending) > 0 {
		// Lingering lines, or left by a writer that panicked (see drain):
		// they go first.
		g.pending = append(g.pending, p...)
		p = p[:0]
	}
	g.mu.Unlock()
	if err := g.drain(p); err != nil {
		return 0, err
	}
	return n, nil
}

// Flush writes every line written so far before it returns (or another
// goroutine does, and Flush waits for it). The error is that of its own write.
func (g *LogWriter) Flush() error {
	g.mu.Lock()
	for g.writing {
		g.drained.Wait()
	}
	if len(g.pending) == 0 {
		g.mu.Unlock()
		return nil
	}
	g.writing = true
	g.mu.Unlock()
	return g.drain(nil)
}

func (g *LogWriter) lingered() {
	g.mu.Lock()
	g.armed = false
	g.mu.Unlock()
	defer func() {
		// The timer's goroutine has no caller to hand a panicking write to
		// (a logger's own goroutine may recover it): here it would take the
		// daemon down. The batch is lost, as it is there; lines queued
		// behind it linger again.
		if recover() != nil {
			g.mu.Lock()
			g.arm()
			g.mu.Unlock()
		}
	}()
	_ = g.Flush()
}

// arm starts the linger's timer for the lines pending, unless it runs. The
// caller holds mu.
func (g *LogWriter) arm() {
	if g.armed || len(g.pending) == 0 {
		return
	}
	g.armed = true
	if g.timer == nil {
		g.timer = time.AfterFunc(g.linger, g.lingered)
	} else {
		g.timer.Reset(g.linger)
	}
}

// drain writes p, then the queue until it is empty, and ends the write. The
// caller has set writing.
func (g *LogWriter) drain(p []byte) error {
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
	return err
}
