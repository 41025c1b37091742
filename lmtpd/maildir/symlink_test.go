package maildir

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// TestUserSymlinksDoNotReachRootFiles: lmtpd runs as root and gives the files
// it creates to the user (Chown), inside a Maildir the user can write to. A
// symlink the user leaves where lmtpd creates a control file (maildirfolder,
// the dovecot-keywords and maildirsize tmp files, maildirsize itself) must
// never make root truncate, append to or chown the file it points to — say
// /etc/shadow, which then belongs to the user.
func TestUserSymlinksDoNotReachRootFiles(t *testing.T) {
	testenv.Need(t) // root (chown)
	const uid, gid = 4242, 4243
	victim := filepath.Join(t.TempDir(), "shadow")
	const secret = "root:$6$secret:19000:0:99999:7:::\n"
	check := func(what string) {
		t.Helper()
		b, err := os.ReadFile(victim)
		st, serr := os.Stat(victim)
		if err != nil || serr != nil {
			t.Fatalf("%s: victim: %v %v", what, err, serr)
		}
		if string(b) != secret {
			t.Errorf("%s: victim rewritten: %q", what, b)
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 0 || s.Gid != 0 {
			t.Errorf("%s: victim now owned by %d:%d", what, s.Uid, s.Gid)
		}
	}
	if err := os.WriteFile(victim, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	w := New(Options{Hostname: "h"})
	msg := func() *Message { return NewMessage([]byte("Subject: x\n\nbody\n")) }

	// maildirfolder: a folder with cur/ but no tmp/ yet, the marker a symlink.
	home := t.TempDir()
	mb := Mailbox{Root: filepath.Join(home, "Maildir"), Home: home, UID: uid, GID: gid, Chown: true}
	if _, err := w.Deliver(mb, Target{}, msg()); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(mb.Root, ".Evil")
	os.MkdirAll(filepath.Join(evil, "cur"), 0o700)
	// The user's, as a folder the user made would be: root's lmtpd now writes
	// in the Maildir with the user's credentials, which a root-only folder
	// would refuse.
	os.Chown(evil, uid, gid)
	os.Chown(filepath.Join(evil, "cur"), uid, gid)
	os.Symlink(victim, filepath.Join(evil, "maildirfolder"))
	if _, err := w.Deliver(mb, Target{Folder: "Evil"}, msg()); err != nil {
		t.Fatalf("deliver into the folder: %v", err)
	}
	check("maildirfolder")

	// dovecot-keywords: the tmp file lmtpd writes before the rename.
	os.Symlink(victim, filepath.Join(mb.Root, "dovecot-keywords.tmp"+strconv.Itoa(w.pid)))
	if _, err := w.Deliver(mb, Target{Flags: []string{"$label1"}}, msg()); err != nil {
		t.Fatalf("deliver with a keyword: %v", err)
	}
	check("dovecot-keywords tmp")
	if st, err := os.Lstat(filepath.Join(mb.Root, "dovecot-keywords")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("dovecot-keywords not written as a file of its own: %v %v", st, err)
	}

	// maildirsize: its recalculation's tmp file, and the file appended to.
	mb.QuotaBytes = 1 << 20
	os.Symlink(victim, filepath.Join(mb.Root, "maildirsize.tmp"+strconv.Itoa(os.Getpid())))
	if _, err := w.Deliver(mb, Target{}, msg()); err != nil {
		t.Fatalf("deliver with quota: %v", err)
	}
	check("maildirsize tmp")
	os.Remove(filepath.Join(mb.Root, "maildirsize"))
	os.Symlink(victim, filepath.Join(mb.Root, "maildirsize"))
	// The symlink's target does not parse as maildirsize: usage recalculates
	// (replacing the link by rename), then the delivery appends its line.
	if _, err := w.Deliver(mb, Target{}, msg()); err != nil {
		t.Fatalf("deliver with maildirsize a symlink: %v", err)
	}
	check("maildirsize")
}
