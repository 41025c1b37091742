package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// Write-behind. With Options.WriteBehind > 0 the kv rows (values, counters and
// sliding windows: greylisting triplets, rate limits, duplicate markers) live in
// this process's memory, loaded from the file on first use, and every changed row
// is written back as its whole current state at most WriteBehind later, many rows
// per transaction. A policy request then costs map lookups instead of a SQLite
// statement, a commit and the read pool's re-read of the pages every commit
// invalidates (measured: ~60 % of policyd's CPU before; docs/benchmarks.md).
//
// What it trades, stated in the config docs:
//   - a crash (not a clean stop: Close writes everything) loses the changes of the
//     last WriteBehind — a greylisted sender waits once more, a rate window
//     forgets a few events; synchronous=NORMAL already risked the last commits
//     on power loss;
//   - another process writing the same file is seen within WriteBehind (within a
//     second while this one writes nothing): after each flush PRAGMA data_version
//     tells whether anyone else committed, and if so every clean cached row is
//     dropped and re-read on next use. Two processes updating one key inside that
//     window: the later flush wins (several policy daemons share Redis, not a
//     file).
//
// Hashes and sets (Bayes tokens) are not cached; Delete is written through at once.
// If a flush fails (disk full, I/O error) the rows stay dirty and are retried, and
// writes fail with store.ErrUnavailable until a flush succeeds again, so callers
// answer temporarily instead of accepting state that cannot be kept.

const (
	kindNone = -1 // cached: the key holds no live value, counter or window

	lockBatch     = 256                    // entries handled per hold of h.mu in flushes and scans
	flushSlice    = 200 * time.Microsecond // SQLite work per transaction of a paced flush
	flushPause    = time.Millisecond       // between them (the netpoller's granularity)
	flushEarly    = 4096                   // dirty rows that trigger a flush before the timer
	idleEvery     = time.Second            // the flusher's period while nothing is written
	evictScan     = 256                    // entries looked at per eviction (on a request's path)
	expireScan    = 4096                   // entries looked at per expiry pass
	defaultHotMax = 200_000
)

type hentry struct {
	kind     int8
	value    []byte // kindValue; never modified in place (a snapshot may share it)
	n        int64  // kindCounter
	buckets  []bucket
	expires  int64  // Unix ms, 0 = never
	gen      uint64 // h.gen when loaded; older and clean means stale
	dirty    bool   // changed since the last flush snapshot
	flushing bool   // in a snapshot, or deleted, not yet committed: must not be evicted
	// loading is set while the row is being read from the file (entry); other
	// callers wait for it to close.
	loading chan struct{}
}

func (e *hentry) live(now int64) bool {
	return e.kind != kindNone && (e.expires == 0 || e.expires > now)
}

// pinned reports whether the entry must stay in memory: dropped, it would be
// re-read from a file that does not have its state yet, or a second read of
// the row would race the first.
func (e *hentry) pinned() bool { return e.dirty || e.flushing || e.loading != nil }

type hot struct {
	mu    sync.Mutex
	m     map[string]*hentry
	dirty []string // keys whose entry has dirty set, each once
	gen   uint64
	max   int
	// pacedRows is the largest flush written in paced slices
	pacedRows int
	failed    atomic.Pointer[error] // last flush's error; writes fail while set
	closing   atomic.Bool           // set under mu (closeHot); writes check it again under mu
	loads     int64                 // reads of the file on a miss (tests)
	idle      bool                  // the flusher found nothing to write and waits idleEvery: the next write kicks it

	idx keyIndex // under mu

	// flushLock (a channel, so that a Delete can give up at its deadline)
	// admits one flush or Delete at a time, so writes land in order.
	flushLock chan struct{}

	version int64 // PRAGMA data_version after our last check
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	ctx     context.Context // for key scans; cancelled by Close
	cancel  context.CancelFunc
	scans   sync.WaitGroup

	// hook, when set (tests only), is called at points where another
	// goroutine can overtake the caller: at "begin" (a write passed hotBegin's
	// checks), "loaded" (a miss read its row, h.mu not held), "wait" (a miss
	// waits for another's read of the key) and "scanned" (the key scan read the
	// file's keys).
	hook func(at, key string)
}

func newHot(maxKeys int, every time.Duration) *hot {
	if maxKeys <= 0 {
		maxKeys = defaultHotMax
	}
	// Paced flushes: as many ~32-row slices, each followed by a pause, as fit
	// in half the interval.
	paced := int(every/(2*(flushSlice+flushPause))) * 32
	h := &hot{m: make(map[string]*hentry), max: maxKeys, pacedRows: paced, idx: keyIndex{seed: maphash.MakeSeed()},
		flushLock: make(chan struct{}, 1), kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

// lockFlush takes flushLock, or fails when ctx is done first: a paced flush
// takes up to half the interval, one on a busy file up to busy_timeout.
func (h *hot) lockFlush(ctx context.Context) error {
	select {
	case h.flushLock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hot) unlockFlush() { <-h.flushLock }

// lookup returns the usable entry for key, or nil. Caller holds h.mu. While
// another caller reads key's row, lookup waits for it with h.mu released; on
// error (ctx done meanwhile) h.mu is not held.
func (h *hot) lookup(ctx context.Context, key string) (*hentry, error) {
	for {
		e := h.m[key]
		switch {
		case e == nil:
			return nil, nil
		case e.loading != nil:
			loading := e.loading
			h.mu.Unlock()
			if h.hook != nil {
				h.hook("wait", key)
			}
			select {
			case <-loading:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			h.mu.Lock()
		case e.gen != h.gen && !e.pinned():
			delete(h.m, key)
			return nil, nil
		default:
			return e, nil
		}
	}
}

func (h *hot) markDirty(key string, e *hentry) {
	if !e.dirty {
		e.dirty = true
		h.dirty = append(h.dirty, key)
		if len(h.dirty) == flushEarly || h.idle {
			h.idle = false
			select {
			case h.kick <- struct{}{}:
			default:
			}
		}
	}
}

// insert adds a loaded or new entry, evicting clean ones when full. Caller holds h.mu.
func (h *hot) insert(key string, e *hentry) {
	if len(h.m) >= h.max {
		scanned, dropped := 0, 0
		for k, old := range h.m { // map order is random: a cheap random eviction
			if scanned++; scanned > evictScan || dropped >= 64 {
				break
			}
			if !old.pinned() {
				delete(h.m, k)
				dropped++
			}
		}
	}
	h.m[key] = e
}

// entry returns key's entry with h.mu held, loading it from the file when it is
// not cached. On error h.mu is not held. A write fails once Close has begun.
func (s *Store) entry(ctx context.Context, key string, write bool) (*hentry, error) {
	h := s.hot
	h.mu.Lock()
	e, err := h.lookup(ctx, key)
	if err != nil {
		return nil, err
	}
	if write && h.closing.Load() {
		h.mu.Unlock()
		return nil, errClosed
	}
	if e != nil {
		return e, nil
	}
	if !h.idx.mayHave(key) {
		e := &hentry{kind: kindNone, gen: h.gen}
		h.insert(key, e)
		return e, nil
	}
	// The row is read without h.mu, under a placeholder that others wait for
	// and eviction skips. Without it, a write to the key made, flushed and
	// evicted during the read would be replaced by the older row read here,
	// and the next flush would write that back over it.
	e = &hentry{kind: kindNone, gen: h.gen, loading: make(chan struct{})}
	h.insert(key, e)
	h.loads++
	h.mu.Unlock()
	loaded, err := s.load(ctx, key)
	if h.hook != nil {
		h.hook("loaded", key)
	}
	h.mu.Lock()
	close(e.loading)
	e.loading = nil
	if err != nil {
		if h.m[key] == e {
			delete(h.m, key)
		}
		h.mu.Unlock()
		return nil, err
	}
	e.kind, e.value, e.n, e.buckets, e.expires = loaded.kind, loaded.value, loaded.n, loaded.buckets, loaded.expires
	if write && h.closing.Load() { // Close's flush may have run during the read
		h.mu.Unlock()
		return nil, errClosed
	}
	return e, nil
}

// load reads key's row from the read pool.
func (s *Store) load(ctx context.Context, key string) (*hentry, error) {
	var kind int64
	var value any
	var expires int64
	err := s.st.load.QueryRowContext(ctx, sql.Named("key", key), sql.Named("now", s.nowMS())).Scan(&kind, &value, &expires)
	e := &hentry{kind: kindNone}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return e, nil
	case err != nil:
		return nil, err
	}
	e.expires = expires
	switch kind {
	case kindValue:
		e.kind = kindValue
		switch v := value.(type) {
		case []byte:
			e.value = append([]byte{}, v...)
		case string:
			e.value = []byte(v)
		default:
			e.value = []byte{}
		}
	case kindCounter:
		v, ok := value.(int64)
		if !ok {
			return nil, fmt.Errorf("counter %q holds %T, not an integer", key, value)
		}
		e.kind, e.n = kindCounter, v
	case kindWindow:
		raw, _ := value.([]byte)
		bs, err := decodeBuckets(raw)
		if err != nil {
			s.log.Warn("sqlite store: replacing corrupt window", "key", key, "err", err)
			bs = nil
		}
		e.kind, e.buckets = kindWindow, bs
	default: // a set's parent row: no value, counter or window here
		e.expires = 0
	}
	return e, nil
}

// begin checks what every cached call checks first; writes also refuse while
// the file does not take flushes. Writes check closing again under h.mu.
func (s *Store) hotBegin(ctx context.Context, op string, write bool) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, op, err)
	}
	h := s.hot
	if h.closing.Load() || s.closed.Load() {
		return fail(ctx, op, errClosed)
	}
	if failed := h.failed.Load(); write && failed != nil {
		return fail(ctx, op, fmt.Errorf("write-behind: last flush failed: %w", *failed))
	}
	if write && h.hook != nil {
		h.hook("begin", op)
	}
	return nil
}

// hotEntry starts a cached call on key: the checks of hotBegin, then the entry
// with h.mu held (not held on error).
func (s *Store) hotEntry(ctx context.Context, op, key string, write bool) (*hentry, error) {
	if err := s.hotBegin(ctx, op, write); err != nil {
		return nil, err
	}
	e, err := s.entry(ctx, key, write)
	if err != nil {
		return nil, fail(ctx, op, err)
	}
	return e, nil
}

func (s *Store) hotGet(ctx context.Context, key string) ([]byte, error) {
	e, err := s.hotEntry(ctx, "get", key, false)
	if err != nil {
		return nil, err
	}
	defer s.hot.mu.Unlock()
	if !e.live(s.nowMS()) || e.kind != kindValue {
		return nil, store.ErrNotFound
	}
	return append([]byte{}, e.value...), nil
}

func (s *Store) hotSet(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.hotBegin(ctx, "set", true); err != nil {
		return err
	}
	h := s.hot
	v := append([]byte{}, value...)
	h.mu.Lock()
	e, err := h.lookup(ctx, key)
	if err != nil {
		return fail(ctx, "set", err)
	}
	defer h.mu.Unlock()
	if h.closing.Load() {
		return fail(ctx, "set", errClosed)
	}
	if e == nil {
		e = &hentry{gen: h.gen}
		h.insert(key, e)
	}
	e.kind, e.value, e.buckets, e.expires = kindValue, v, nil, s.expiry(ttl)
	h.markDirty(key, e)
	return nil
}

func (s *Store) hotSetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	e, err := s.hotEntry(ctx, "setnx", key, true)
	if err != nil {
		return false, err
	}
	defer s.hot.mu.Unlock()
	if e.live(s.nowMS()) {
		return false, nil
	}
	e.kind, e.value, e.buckets, e.expires = kindValue, append([]byte{}, value...), nil, s.expiry(ttl)
	s.hot.markDirty(key, e)
	return true, nil
}

func (s *Store) hotIncr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	e, err := s.hotEntry(ctx, "incr", key, true)
	if err != nil {
		return 0, err
	}
	defer s.hot.mu.Unlock()
	if e.live(s.nowMS()) && e.kind == kindCounter {
		e.n += delta
	} else {
		e.kind, e.n, e.value, e.buckets, e.expires = kindCounter, delta, nil, nil, s.expiry(ttl)
	}
	s.hot.markDirty(key, e)
	return e.n, nil
}

// hotWindowAdd is WindowAdd on the cached buckets, with the same bucket and
// expiry rules as the write-through path (window.go).
func (s *Store) hotWindowAdd(ctx context.Context, key string, nowMS, winMS, n int64) (int64, error) {
	e, err := s.hotEntry(ctx, "windowadd", key, n != 0)
	if err != nil {
		return 0, err
	}
	defer s.hot.mu.Unlock()
	clock := s.nowMS()
	isWindow := e.live(clock) && e.kind == kindWindow
	if n == 0 {
		if !isWindow {
			return 0, nil
		}
		var total int64
		for _, b := range e.buckets {
			if b.at > nowMS-winMS {
				total += b.n
			}
		}
		return total, nil
	}
	var bs []bucket
	if isWindow {
		bs = e.buckets
	}
	bs, total := addEvents(bs, nowMS, winMS, n)
	if !isWindow || e.expires < clock+winMS {
		e.expires = clock + 2*winMS
	}
	e.kind, e.buckets, e.value = kindWindow, bs, nil
	s.hot.markDirty(key, e)
	return total, nil
}

// hotDelete writes the delete through at once (hash and set rows are not cached,
// and their readers go to the file) and marks the keys missing in the cache.
func (s *Store) hotDelete(ctx context.Context, keys []string) error {
	if err := s.hotBegin(ctx, "delete", true); err != nil {
		return err
	}
	h := s.hot
	// No snapshot taken before may land after the delete.
	if err := h.lockFlush(ctx); err != nil {
		return fail(ctx, "delete", err)
	}
	defer h.unlockFlush()
	h.mu.Lock()
	// Reads of the keys in progress would put the rows back: wait for them,
	// then mark every key without releasing h.mu.
	for i := 0; i < len(keys); i++ {
		if e := h.m[keys[i]]; e != nil && e.loading != nil {
			if _, err := h.lookup(ctx, keys[i]); err != nil {
				return fail(ctx, "delete", err)
			}
			i = -1 // h.mu was released: look at every key again
		}
	}
	if h.closing.Load() {
		h.mu.Unlock()
		return fail(ctx, "delete", errClosed)
	}
	// The entries stay pinned (flushing: no flush runs meanwhile) until the
	// delete commits: evicted before, a miss would read the rows back.
	marked := make([]*hentry, len(keys))
	for i, k := range keys {
		e, _ := h.lookup(ctx, k) // none is loading: no wait, no error
		if e != nil {
			e.kind, e.value, e.buckets, e.expires, e.dirty = kindNone, nil, nil, 0, false
		} else {
			e = &hentry{kind: kindNone, gen: h.gen}
			h.insert(k, e)
		}
		e.flushing = true
		marked[i] = e
	}
	h.mu.Unlock()
	err := s.deleteRows(ctx, keys)
	h.mu.Lock()
	for i, e := range marked {
		e.flushing = false
		if err != nil && !e.pinned() && h.m[keys[i]] == e {
			delete(h.m, keys[i]) // the row may still be there: re-read on next use
		}
	}
	h.mu.Unlock()
	return err
}
