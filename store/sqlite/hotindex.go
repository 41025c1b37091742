package sqlite

import (
	"context"
	"hash/maphash"
	"time"
)

// The key index lets write-behind answer "no such key" without reading the file.
// Most policy lookups are for keys that do not exist yet (a new greylisting
// triplet, a client's first rate window), and each such miss would otherwise be a
// SQLite query. The index is a set of 64-bit hashes of every key that may have a
// kv row: built by one scan of the keys in the background (started by the first
// flush, so a short-lived command never pays for it), then kept up to date
// by our own flushes. A hash collision only costs a read. It is trusted only while
// complete: until the first scan ends, and after another process commits (we do
// not know which keys it wrote) until a new scan finishes, every miss reads the
// file as before. Deleted and expired keys stay in it until the next scan, which
// also runs when it has grown well past its last scanned size.

const (
	maxIndexed   = 4 << 20 // keys; beyond that the index is dropped and misses read the file
	rescanPeriod = 10 * time.Second
)

type keyIndex struct {
	seed     maphash.Seed
	set      map[uint64]struct{}
	complete bool
	scanning bool
	added    []uint64 // keys flushed while a scan runs: it may not see them
	scanned  int      // size after the last scan
	lastScan time.Time
}

func (x *keyIndex) hash(key string) uint64 { return maphash.String(x.seed, key) }

// mayHave reports whether key can have a row in the file. Caller holds h.mu.
func (x *keyIndex) mayHave(key string) bool {
	if !x.complete {
		return true
	}
	_, ok := x.set[x.hash(key)]
	return ok
}

// flushed records that key now has a row. Caller holds h.mu.
func (x *keyIndex) flushed(key string) {
	k := x.hash(key)
	// Recorded for a running scan even without a set (the first scan, or
	// after one grew too large): the scan's snapshot may predate this row, and
	// the set it completes is trusted.
	if x.scanning {
		x.added = append(x.added, k)
	}
	if x.set == nil {
		return
	}
	x.set[k] = struct{}{}
	if len(x.set) > maxIndexed {
		x.set, x.complete = nil, false
	}
}

// needScan reports whether a scan should start now. Caller holds h.mu.
func (x *keyIndex) needScan(now time.Time) bool {
	if x.scanning || now.Sub(x.lastScan) < rescanPeriod {
		return false
	}
	return !x.complete || len(x.set) > 2*x.scanned+10_000
}

// scanKeys rebuilds the index from one snapshot of the file's keys.
func (s *Store) scanKeys(ctx context.Context) {
	h := s.hot
	h.mu.Lock()
	if h.idx.scanning {
		h.mu.Unlock()
		return
	}
	h.idx.scanning, h.idx.added, h.idx.lastScan = true, nil, time.Now()
	gen := h.gen
	seed := h.idx.seed
	h.mu.Unlock()

	set, err := s.readKeys(ctx, seed)
	if h.hook != nil {
		h.hook("scanned", "")
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	h.idx.scanning = false
	if err != nil || set == nil {
		if err != nil && ctx.Err() == nil {
			s.log.Warn("sqlite store: key index scan failed; misses read the file", "err", err)
		}
		h.idx.added = nil
		return
	}
	for _, k := range h.idx.added {
		set[k] = struct{}{}
	}
	h.idx.added = nil
	if len(set) > maxIndexed {
		return
	}
	h.idx.set, h.idx.scanned = set, len(set)
	// Another process's commit during the scan may be missing from it.
	h.idx.complete = gen == h.gen
}

// readKeys hashes every key in kv; nil (no error) when there are too many.
func (s *Store) readKeys(ctx context.Context, seed maphash.Seed) (map[uint64]struct{}, error) {
	rows, err := s.st.keys.QueryContext(ctx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	set := make(map[uint64]struct{})
	var key []byte
	for rows.Next() {
		if err := rows.Scan(&key); err != nil {
			return nil, err
		}
		set[maphash.Bytes(seed, key)] = struct{}{}
		if len(set) > maxIndexed {
			return nil, nil
		}
	}
	return set, rows.Err()
}
