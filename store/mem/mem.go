// Package mem is an in-memory store.Store for unit tests and single-process tools.
package mem

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

type entry struct {
	value   []byte
	counter int64
	hash    map[string]int64
	set     map[string]struct{}
	events  []event
	expires time.Time // zero = never
}

type event struct {
	at time.Time
	n  int64
}

// Store is a mutex-guarded map; Now can be replaced to drive TTLs in tests.
type Store struct {
	mu  sync.Mutex
	m   map[string]*entry
	Now func() time.Time
	// Down makes every call fail with store.ErrUnavailable, to test fail-open/closed paths.
	Down bool

	closed bool
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{m: map[string]*entry{}, Now: time.Now} }

func (s *Store) get(key string) *entry {
	e := s.m[key]
	if e != nil && !e.expires.IsZero() && !s.Now().Before(e.expires) {
		delete(s.m, key)
		return nil
	}
	return e
}

func (s *Store) create(key string, ttl time.Duration) *entry {
	e := &entry{}
	if ttl > 0 {
		e.expires = s.Now().Add(ttl)
	}
	s.m[key] = e
	return e
}

// check fails the call like a real backend would: down, closed, or a context that
// is already done (the error is both the context's and store.ErrUnavailable).
func (s *Store) check(ctx context.Context) error {
	switch {
	case s.Down:
		return fmt.Errorf("mem: down: %w", store.ErrUnavailable)
	case s.closed:
		return fmt.Errorf("mem: closed: %w", store.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: %w: %w", store.ErrUnavailable, err)
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	e := s.get(key)
	if e == nil || e.value == nil {
		return nil, store.ErrNotFound
	}
	return append([]byte(nil), e.value...), nil
}

func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	s.create(key, ttl).value = append([]byte{}, value...)
	return nil
}

func (s *Store) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return false, err
	}
	if s.get(key) != nil {
		return false, nil
	}
	s.create(key, ttl).value = append([]byte{}, value...)
	return true, nil
}

func (s *Store) Delete(ctx context.Context, keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	for _, k := range keys {
		delete(s.m, k)
	}
	return nil
}

func (s *Store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	e := s.get(key)
	if e == nil {
		e = s.create(key, ttl)
	}
	e.counter += delta
	return e.counter, nil
}

func (s *Store) WindowAdd(ctx context.Context, key string, now time.Time, window time.Duration, n int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	e := s.get(key)
	if e == nil {
		e = s.create(key, 0)
	}
	cut := now.Add(-window)
	kept := e.events[:0]
	var total int64
	for _, ev := range e.events {
		if ev.at.After(cut) {
			kept = append(kept, ev)
			total += ev.n
		}
	}
	e.events = kept
	if n != 0 {
		e.events = append(e.events, event{now, n})
		total += n
		// Like the real backends, a window key lives one window past its
		// last event (on the store clock), so idle keys do not pile up.
		e.expires = s.Now().Add(window)
	}
	return total, nil
}

func (s *Store) HIncr(ctx context.Context, key string, deltas map[string]int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	e := s.get(key)
	if e == nil {
		e = s.create(key, 0)
	}
	if e.hash == nil {
		e.hash = map[string]int64{}
	}
	for f, d := range deltas {
		e.hash[f] += d
	}
	return nil
}

func (s *Store) HGet(ctx context.Context, key string, fields []string) (map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	e := s.get(key)
	if e == nil {
		return out, nil
	}
	for _, f := range fields {
		if v, ok := e.hash[f]; ok {
			out[f] = v
		}
	}
	return out, nil
}

func (s *Store) SAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	e := s.get(key)
	if e == nil {
		e = s.create(key, ttl)
	} else if ttl > 0 {
		e.expires = s.Now().Add(ttl)
	}
	if e.set == nil {
		e.set = map[string]struct{}{}
	}
	for _, m := range members {
		e.set[m] = struct{}{}
	}
	return nil
}

func (s *Store) SIsMember(ctx context.Context, key, member string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return false, err
	}
	e := s.get(key)
	if e == nil {
		return false, nil
	}
	_, ok := e.set[member]
	return ok, nil
}

// Close makes every later call fail with store.ErrUnavailable, like a real backend.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
