package sqlite

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Flushing the write-behind cache (hot.go) to the file, and its upkeep.

type flushRow struct {
	key     string
	e       *hentry
	kind    int8
	value   any
	expires int64
}

// flush writes every dirty row (paced: see below), then checks
// whether another connection changed the file since the last check.
func (s *Store) flush(ctx context.Context, paced bool) error {
	h := s.hot
	if err := h.lockFlush(ctx); err != nil {
		return fail(ctx, "flush", err)
	}
	defer h.unlockFlush()
	h.mu.Lock()
	keys := h.dirty
	h.dirty = nil
	h.mu.Unlock()
	// h.mu is taken per lockBatch entries: requests wait for a few µs at most,
	// however many rows a flush has.
	rows := make([]flushRow, 0, len(keys))
	for part := range slices.Chunk(keys, lockBatch) {
		h.mu.Lock()
		for _, k := range part {
			e := h.m[k]
			if e == nil || !e.dirty {
				continue
			}
			r := flushRow{key: k, e: e, kind: e.kind, expires: e.expires}
			switch e.kind {
			case kindValue:
				r.value = e.value
			case kindCounter:
				r.value = e.n
			case kindWindow:
				r.value = encodeBuckets(e.buckets)
			default:
				continue // only Delete makes a key missing, and it writes through
			}
			e.dirty, e.flushing = false, true
			rows = append(rows, r)
		}
		h.mu.Unlock()
	}

	// A flush's SQLite work is ~4–6 µs of CPU per row. Written in one go it
	// holds a CPU for milliseconds, and on a small host the requests waiting for
	// that CPU become the latency tail: the paced flush of the flusher writes
	// slices of flushSlice and pauses between them (measured with bench/policyd
	// at 5,000 requests/s: p99 from the send 2.2–2.4 → 1.1–1.2 ms). A backlog
	// the pauses could not clear within the interval is written in one
	// transaction instead, as are the flushes of Close, Sweep and tests:
	// throughput first, and a transaction writes the pages its rows share once.
	slice := time.Duration(0)
	if paced && len(rows) <= h.pacedRows {
		slice = flushSlice
	}
	// Sorted, consecutive upserts land on neighbouring leaf pages.
	slices.SortFunc(rows, func(a, b flushRow) int { return strings.Compare(a.key, b.key) })
	args := make([]any, 0, 4*putSizes[0])
	var err error
	for done := 0; done < len(rows) && err == nil; {
		if done > 0 {
			time.Sleep(flushPause)
		}
		start, n := time.Now(), 0
		err = s.write(ctx, func() error {
			n = 0 // the writer may run this twice
			for n < len(rows)-done {
				k, err := s.putBatch(rows[done+n:], paced, args)
				if err != nil {
					return err
				}
				if n += k; slice > 0 && time.Since(start) >= slice {
					break
				}
			}
			return nil
		})
		if err == nil {
			s.flushed(rows[done:done+n], nil)
			done += n
		} else {
			s.flushed(rows[done:], err)
		}
	}
	if err != nil {
		h.failed.Store(&err)
		return fail(ctx, "flush", err)
	}
	var v int64
	if err := s.st.dataVersion.QueryRowContext(ctx).Scan(&v); err != nil {
		return fail(ctx, "flush", err)
	}
	h.failed.Store(nil)
	h.mu.Lock()
	if v != h.version {
		h.version = v
		h.gen++ // another process wrote: clean entries are re-read on next use
		h.idx.complete = false
	}
	if !h.closing.Load() && h.idx.needScan(time.Now()) {
		h.scans.Go(func() { s.scanKeys(h.ctx) })
	}
	h.mu.Unlock()
	return nil
}

// putBatch upserts the first rows in one statement of the largest size that
// fits (putSizes; a paced flush checks its clock after each statement, so it
// takes at most 8) and returns how many it wrote. args is scratch space.
func (s *Store) putBatch(rows []flushRow, paced bool, args []any) (int, error) {
	size := putSizes[len(putSizes)-1]
	for _, n := range putSizes {
		if n <= len(rows) && (!paced || n <= 8) {
			size = n
			break
		}
	}
	args = args[:0]
	for _, r := range rows[:size] {
		args = append(args, r.key, int64(r.kind), r.value, r.expires)
	}
	_, err := s.st.put[size].Exec(args...)
	return size, err
}

// flushed ends the flush of rows: committed (err == nil) or to be retried.
func (s *Store) flushed(rows []flushRow, err error) {
	h := s.hot
	for part := range slices.Chunk(rows, lockBatch) {
		h.mu.Lock()
		for _, r := range part {
			r.e.flushing = false
			if err != nil {
				h.markDirty(r.key, r.e)
			} else {
				h.idx.flushed(r.key) // before the entry can be evicted
			}
		}
		h.mu.Unlock()
	}
}

// flusher flushes every interval (sooner when many rows are dirty) and drops
// expired clean entries a bounded number at a time, until stopped.
func (s *Store) flusher(every time.Duration) {
	h := s.hot
	defer close(h.done)
	t := time.NewTimer(every)
	defer t.Stop()
	failing := false
	var lastExpire time.Time
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		case <-h.kick:
		}
		// With nothing to write the flusher waits idleEvery instead, and the
		// next write wakes it (markDirty): an idle daemon woke 20 times a
		// second for nothing, and each wake-up set the Go runtime's sysmon
		// polling for a millisecond (1.3 % of a CPU doing nothing).
		// The period runs from flush start to flush start, as a ticker's
		// would: counted from the end, a paced flush's own length would add to
		// it, and a longer period makes the next backlog too large to pace.
		start := time.Now()
		h.mu.Lock()
		quiet := len(h.dirty) == 0
		h.idle = quiet
		h.mu.Unlock()
		// Logged when it starts and stops failing, not every interval.
		err := s.flush(context.Background(), true)
		next := every
		if quiet && err == nil {
			next = max(every, idleEvery)
		}
		t.Reset(max(0, time.Until(start.Add(next))))
		switch {
		case err != nil && !failing:
			s.log.Error("sqlite store: write-behind flush failed; retrying, writes fail meanwhile", "err", err)
		case err == nil && failing:
			s.log.Info("sqlite store: write-behind flush works again")
		}
		failing = err != nil
		// Expired rows only cost memory: a pass a second is plenty.
		if now := time.Now(); now.Sub(lastExpire) >= time.Second {
			lastExpire = now
			s.expireHot()
		}
	}
}

func (s *Store) expireHot() {
	h := s.hot
	now := s.nowMS()
	for range expireScan / lockBatch { // each round looks at a random part of the map
		h.mu.Lock()
		scanned := 0
		for k, e := range h.m {
			if scanned++; scanned > lockBatch {
				break
			}
			if !e.pinned() && (e.kind == kindNone || !e.live(now)) && (e.kind != kindNone || len(h.m) > h.max/2) {
				delete(h.m, k)
			}
		}
		h.mu.Unlock()
	}
}

// closeHot stops the flusher and writes what is left; later calls fail.
func (s *Store) closeHot() error {
	h := s.hot
	// Under h.mu: a write that finds closing unset under h.mu has marked its
	// entry dirty before the final flush below takes its snapshot.
	h.mu.Lock()
	h.closing.Store(true)
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	err := s.flush(context.Background(), false)
	h.cancel()
	h.scans.Wait()
	return err
}
