package quarantine

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// TestRecoverConcurrent: lmtpd's housekeeping and an admin's `quarantine list`
// or `purge` may recover the same orphans at once. Each orphan is indexed once,
// and neither fails on a row the other inserted first (a failed Recover makes
// `purge` give up and leaves the remaining orphans unindexed).
func TestRecoverConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const orphans = 100
	var stores []*Store
	for range 4 { // processes
		stores = append(stores, openStore(t, Config{Dir: dir}))
	}
	s := stores[0]
	past := time.Now().Add(-2 * time.Hour)
	for range orphans {
		id, err := s.Add(ctx, &Entry{Recipient: "a@b"}, []byte("Subject: x\n\nbody\n"))
		if err != nil {
			t.Fatal(err)
		}
		os.Chtimes(s.path(id), past, past)
	}
	if _, err := s.db.Exec(`DELETE FROM messages`); err != nil { // the lost index
		t.Fatal(err)
	}
	var mu sync.Mutex
	total := 0
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, st := range stores {
		wg.Go(func() {
			<-start
			n, err := st.Recover(ctx)
			if err != nil {
				t.Errorf("concurrent Recover: %v", err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if l, err := s.List(ctx, Filter{}); err != nil || len(l) != orphans {
		t.Errorf("after concurrent recovery: %d entries, %v; want %d", len(l), err, orphans)
	}
	if total != orphans {
		t.Errorf("recovered %d in all, want %d (each once)", total, orphans)
	}
}
