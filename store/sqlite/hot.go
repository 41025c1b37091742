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
	flushing bool   // in a snapshot not yet committed: must not be evicted
}

func (e *hentry) live(now int64) bool {
	return e.kind != kindNone && (e.expires == 0 || e.expires > now)
}

type hot struct {
	mu    sync.Mutex
	m     map[string]*hentry
	dirty []string // keys whose entry has dirty set, each once
	gen   uint64
	max   int
	// pacedRows is the largest flush written in paced slices
	pacedRows int
	failed    atomic.Pointer[error] // last flush's error; writes fail while set
	closing   atomic.Bool
	loads     int64 // reads of the file on a miss (tests)
	idle      bool  // the flusher found nothing to write and waits idleEvery: the next write kicks it

	idx keyIndex // under mu

	flushMu sync.Mutex // one flush or Delete at a time, so writes land in order
	version int64      // PRAGMA data_version after our last check
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	ctx     context.Context // for key scans; cancelled by Close
	cancel  context.CancelFunc
	scans   sync.WaitGroup
}

func newHot(maxKeys int, every time.Duration) *hot {
	if maxKeys <= 0 {
		maxKeys = defaultHotMax
	}
	// Paced flushes: as many ~32-row slices, each followed by a pause, as fit
	// in half the interval.
	paced := int(every/(2*(flushSlice+flushPause))) * 32
	h := &hot{m: make(map[string]*hentry), max: maxKeys, pacedRows: paced, idx: keyIndex{seed: maphash.MakeSeed()},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

// lookup returns the usable entry for key, or nil. Caller holds h.mu.
func (h *hot) lookup(key string) *hentry {
	e := h.m[key]
	if e != nil && e.gen != h.gen && !e.dirty && !e.flushing {
		delete(h.m, key)
		return nil
	}
	return e
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
			if !old.dirty && !old.flushing {
				delete(h.m, k)
				dropped++
			}
		}
	}
	h.m[key] = e
}

// entry returns key's entry with h.mu held, loading it from the file when it is
// not cached. On error h.mu is not held.
func (s *Store) entry(ctx context.Context, key string) (*hentry, error) {
	h := s.hot
	h.mu.Lock()
	if e := h.lookup(key); e != nil {
		return e, nil
	}
	if !h.idx.mayHave(key) {
		e := &hentry{kind: kindNone, gen: h.gen}
		h.insert(key, e)
		return e, nil
	}
	gen := h.gen
	h.loads++
	h.mu.Unlock()
	loaded, err := s.load(ctx, key)
	if err != nil {
		return nil, err
	}
	loaded.gen = gen
	h.mu.Lock()
	if e := h.lookup(key); e != nil { // another caller loaded or wrote it meanwhile
		return e, nil
	}
	h.insert(key, loaded)
	return loaded, nil
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
// the file does not take flushes.
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
	return nil
}

// hotEntry starts a cached call on key: the checks of hotBegin, then the entry
// with h.mu held (not held on error).
func (s *Store) hotEntry(ctx context.Context, op, key string, write bool) (*hentry, error) {
	if err := s.hotBegin(ctx, op, write); err != nil {
		return nil, err
	}
	e, err := s.entry(ctx, key)
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
	defer h.mu.Unlock()
	e := h.lookup(key)
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
	h.flushMu.Lock() // no snapshot taken before may land after the delete
	defer h.flushMu.Unlock()
	h.mu.Lock()
	for _, k := range keys {
		if e := h.m[k]; e != nil {
			e.kind, e.value, e.buckets, e.expires, e.dirty = kindNone, nil, nil, 0, false
		} else {
			h.insert(k, &hentry{kind: kindNone, gen: h.gen})
		}
	}
	h.mu.Unlock()
	err := s.deleteRows(ctx, keys)
	if err != nil {
		h.mu.Lock() // the rows may still be there: forget, and re-read on next use
		for _, k := range keys {
			if e := h.m[k]; e != nil && !e.dirty {
				delete(h.m, k)
			}
		}
		h.mu.Unlock()
	}
	return err
}
