package testenv

import (
	"sync"
	"testing"
	"time"
)

// shared is one binary-wide server: started by the first test that asks for
// it, stopped (and its temp dir removed) by Main. A start that fails is not
// retried: every later test fails with the same error.
type shared[T any] struct {
	mu   sync.Mutex
	inst *T
	err  error
}

// get returns the server, starting it on first use. stop must stop it and
// remove its dir; where describes it for the log line.
func (s *shared[T]) get(t testing.TB, name string, start func() (*T, error), stop func(*T), where func(*T) string) *T {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst == nil && s.err == nil {
		began := time.Now()
		s.inst, s.err = start()
		if s.err == nil {
			inst := s.inst
			registerExit(func() { stop(inst) })
			t.Logf("testenv: %s %s started in %s", name, where(inst), time.Since(began).Round(time.Millisecond))
		}
	}
	if s.err != nil {
		t.Fatalf("testenv: %s: %v", name, s.err)
	}
	return s.inst
}
