package sqlite_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/sqlite"
	"github.com/dovetail-mail/dovetail/store/storetest"
)

func open(t testing.TB, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "state.db")
	}
	s, err := sqlite.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunWithClock(t, func(t *testing.T, now func() time.Time) store.Store {
		return open(t, sqlite.Options{Now: now, SweepInterval: -1})
	})
}
