//go:build unix

package quarantine

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestIndexNotWorldReadable: the index names every quarantined message's
// recipient, sender and subject; like the messages (0600) it is the owner's
// alone, also in a quarantine directory made beforehand with 0755 (a package's
// /var/spool/dovetail), and so are SQLite's -wal and -shm beside it.
func TestIndexNotWorldReadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "quarantine")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer syscall.Umask(syscall.Umask(0o022))
	s := openStore(t, Config{Dir: dir})
	id, err := s.Add(context.Background(), &Entry{Recipient: "alice@example.com", Subject: "private"}, []byte("Subject: private\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index.db", "index.db-wal", "index.db-shm", filepath.Join("msg", id+".eml")} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no access for group and others", name, st.Mode().Perm())
		}
	}
}
