package maildir

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestUserFIFOsDoNotHang: a user who can write to their Maildir may put a
// FIFO where lmtpd opens a control file — maildirsize, dovecot-keywords, a
// folder's maildirfolder (with the folder's tmp/ gone, so it is made again).
// Opening a FIFO waits for the other end, for ever: every delivery to that
// user hung on a thread of its own (locked, when it runs with the user's
// credentials) until Postfix gave up and retried, and the retries piled up
// threads until the Go runtime's limit killed lmtpd for everyone. Now each
// delivery finishes at once: the quota is recalculated over the FIFO as over
// a symlink, the others fail (451, the user's own doing), nothing waits.
func TestUserFIFOsDoNotHang(t *testing.T) {
	mkfifo := func(p string) {
		t.Helper()
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	done := func(what string, fn func() error) error {
		t.Helper()
		c := make(chan error, 1)
		go func() { c <- fn() }()
		select {
		case err := <-c:
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: delivery hangs on a FIFO", what)
			return nil
		}
	}
	msg := []byte("Subject: x\n\nbody\n")
	w := New(Options{Fsync: true})

	// maildirsize: recalculated and replaced, the message delivered.
	mb := Mailbox{Root: filepath.Join(t.TempDir(), "Maildir"), QuotaBytes: 1 << 20}
	if _, err := w.Deliver(mb, Target{}, NewMessage(msg)); err != nil {
		t.Fatal(err)
	}
	mkfifo(filepath.Join(mb.Root, "maildirsize"))
	if err := done("maildirsize", func() error { _, err := w.Deliver(mb, Target{}, NewMessage(msg)); return err }); err != nil {
		t.Errorf("maildirsize FIFO: %v", err)
	}
	if st, err := os.Lstat(filepath.Join(mb.Root, "maildirsize")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("maildirsize not replaced by a file: %v %v", st, err)
	}
	if b, c, err := Usage(mb); err != nil || c != 2 || b != 2*int64(len(msg)) {
		t.Errorf("usage %d bytes %d messages, %v", b, c, err)
	}

	// dovecot-keywords: the keyword delivery fails, it does not wait.
	lists := Target{Folder: "Lists", Create: true}
	if _, err := w.Deliver(mb, lists, NewMessage(msg)); err != nil {
		t.Fatal(err)
	}
	mkfifo(filepath.Join(mb.Root, ".Lists", "dovecot-keywords"))
	done("dovecot-keywords", func() error {
		_, err := w.Deliver(mb, Target{Folder: "Lists", Flags: []string{"$Label1"}}, NewMessage(msg))
		return err
	})

	// maildirfolder, written again when the folder's tmp/ is missing.
	os.Remove(filepath.Join(mb.Root, ".Lists", "tmp"))
	mkfifo(filepath.Join(mb.Root, ".Lists", "maildirfolder"))
	done("maildirfolder", func() error { _, err := w.Deliver(mb, lists, NewMessage(msg)); return err })
}
