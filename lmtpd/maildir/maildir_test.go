package maildir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

func TestFolderPath(t *testing.T) {
	cases := []struct{ in, out string }{
		{"", ""}, {"INBOX", ""}, {"inbox", ""}, {"Lists", ".Lists"}, {"a/b", ".a.b"}, {"a.b", ".a.b"},
		{"INBOX.Junk", ".Junk"}, {"Entwürfe", ".Entw&APw-rfe"}, {"R&D", ".R&-D"},
	}
	for _, c := range cases {
		got, err := FolderPath(c.in)
		if err != nil || got != c.out {
			t.Errorf("FolderPath(%q) = %q, %v; want %q", c.in, got, err, c.out)
		}
	}
	// The directory name (".", modified UTF-7) must fit NAME_MAX, 255 bytes.
	if got, err := FolderPath(strings.Repeat("x", 254)); err != nil || len(got) != 255 {
		t.Errorf("254-byte name: %d bytes, %v", len(got), err)
	}
	for _, bad := range []string{"a..b", ".hidden", "x/", "a\nb", strings.Repeat("x", 300),
		strings.Repeat("x", 255), strings.Repeat("ä", 100)} {
		if _, err := FolderPath(bad); err == nil {
			t.Errorf("FolderPath(%q) accepted", bad)
		}
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{"a\r\nb\r\n": "a\nb\n", "a\rb": "a\nb", "a\nb": "a\nb", "\r\r\n": "\n\n"} {
		if got := string(Normalize([]byte(in))); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUniqueNamesAndClean(t *testing.T) {
	fixed := time.Unix(1795422844, 803214000)
	w := New(Options{Hostname: "h/o:st", Now: func() time.Time { return fixed }})
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				n := w.uniqueName()
				mu.Lock()
				if seen[n] {
					t.Errorf("duplicate name %s", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !strings.Contains(w.uniqueName(), `.h\057o\072st`) {
		t.Error("hostname not escaped")
	}
	// A stale tmp file of a previous process instance on this host is removed.
	root := t.TempDir()
	mb := Mailbox{Root: filepath.Join(root, "Maildir")}
	if _, err := w.Deliver(mb, Target{}, NewMessage([]byte("Subject: x\n\nbody\n"))); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(mb.Root, "tmp", "1.M1P999999999."+w.host)
	os.WriteFile(stale, []byte("half"), 0o600)
	old := w.started.Add(-time.Minute)
	os.Chtimes(stale, old, old)
	if n := w.Clean(mb.Root); n != 1 {
		t.Errorf("Clean removed %d files", n)
	}
}

func TestQuotaRecalc(t *testing.T) {
	root := t.TempDir()
	w := New(Options{})
	mb := Mailbox{Root: filepath.Join(root, "Maildir"), QuotaBytes: 100}
	msg := NewMessage([]byte(strings.Repeat("x", 40) + "\n"))
	for i := 0; i < 2; i++ {
		if _, err := w.Deliver(mb, Target{}, NewMessage(msg.Bytes())); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Deliver(mb, Target{}, NewMessage(msg.Bytes())); err == nil {
		t.Fatal("third message fits in 100 bytes?")
	}
	os.Remove(filepath.Join(mb.Root, "maildirsize")) // recalculated from S= in names
	b, c, err := Usage(mb)
	if err != nil || b != 82 || c != 2 {
		t.Errorf("usage %d bytes %d msgs %v", b, c, err)
	}
}

func FuzzFolderPath(f *testing.F) {
	for _, s := range []string{"INBOX", "a/b", "Entwürfe", "..", "&", "a.b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := FolderPath(s)
		if err != nil {
			return
		}
		if strings.Contains(p, "/") || strings.Contains(p, "..") || (p != "" && p[0] != '.') {
			t.Fatalf("FolderPath(%q) = %q escapes the Maildir", s, p)
		}
	})
}

// TestFolderTmpSweptAfterRestart: a killed writer's half-written file in a
// folder's tmp/ (not only INBOX's) is gone after the next delivery into it.
func TestFolderTmpSweptAfterRestart(t *testing.T) {
	mb := Mailbox{Root: filepath.Join(t.TempDir(), "Maildir")}
	old := New(Options{Hostname: "mx"})
	if _, err := old.Deliver(mb, Target{Folder: "Lists", Create: true}, NewMessage([]byte("a\n"))); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(mb.Root, ".Lists", "tmp", "1.M1P999999999.mx,S=4,W=5")
	os.WriteFile(stale, []byte("hal"), 0o600)
	past := time.Now().Add(-time.Minute)
	os.Chtimes(stale, past, past)
	restarted := New(Options{Hostname: "mx"})
	if _, err := restarted.Deliver(mb, Target{Folder: "Lists"}, NewMessage([]byte("b\n"))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale folder tmp file survived the restart: %v", err)
	}
}

// TestOwnershipAndParents: as root, every file and directory a delivery creates in
// the user's home belongs to the user; a missing level above the home takes the
// mode and owner of its parent instead of a root-only 0700.
func TestOwnershipAndParents(t *testing.T) {
	testenv.Need(t) // root: chown

	base := t.TempDir()
	os.Chmod(base, 0o751)
	home := filepath.Join(base, "example.com", "alice")
	mb := Mailbox{Root: filepath.Join(home, "Maildir"), Home: home, UID: 8, GID: 8, Chown: true, QuotaBytes: 1 << 20}
	w := New(Options{Fsync: true, Hostname: "mx"})
	for _, tg := range []Target{{}, {Folder: "Lists", Create: true, Flags: []string{`\Seen`, "$Work"}}} {
		if _, err := w.Deliver(mb, tg, NewMessage([]byte("Subject: x\n\nbody\n"))); err != nil {
			t.Fatal(err)
		}
	}
	owner := func(p string) (uint32, os.FileMode) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Uid, st.Mode().Perm()
	}
	if uid, mode := owner(filepath.Join(base, "example.com")); uid != 0 || mode != 0o751 {
		t.Errorf("domain level: uid %d mode %o, want the parent's 0 751", uid, mode)
	}
	err := filepath.Walk(home, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if uid := info.Sys().(*syscall.Stat_t).Uid; uid != 8 {
			t.Errorf("%s owned by %d, want 8", p, uid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"Maildir/maildirsize", "Maildir/.Lists/dovecot-keywords", "Maildir/.Lists/maildirfolder"} {
		if _, err := os.Stat(filepath.Join(home, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestKeywordsDovecotLocking: known keywords map without any lock; a new one is
// added under Dovecot's dovecot-uidlist.lock (a live holder makes it a temporary
// failure, a dead one on this host is overridden), keeps the existing letters and
// moves the file's mtime second forward so Dovecot re-reads it.
func TestKeywordsDovecotLocking(t *testing.T) {
	mb := Mailbox{Root: filepath.Join(t.TempDir(), "Maildir")}
	w := New(Options{Hostname: "mx"})
	msg := func() *Message { return NewMessage([]byte("Subject: k\n\nx\n")) }
	if _, err := w.Deliver(mb, Target{Folder: "Work", Create: true}, msg()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mb.Root, ".Work")
	kwPath := filepath.Join(dir, "dovecot-keywords")
	os.WriteFile(kwPath, []byte("0 $Junk\n2 Important\n"), 0o600)
	future := time.Now().Add(5 * time.Second).Truncate(time.Second)
	os.Chtimes(kwPath, future, future)

	lock := filepath.Join(dir, "dovecot-uidlist.lock")
	os.WriteFile(lock, []byte(fmt.Sprintf("1:%s", w.sysHost)), 0o600) // held by a live process
	w.lockTimeout = 50 * time.Millisecond

	p, err := w.Deliver(mb, Target{Folder: "Work", Flags: []string{"important", `\Seen`}}, msg())
	if err != nil || !strings.HasSuffix(p, ":2,Sc") {
		t.Fatalf("known keyword under a held lock: %q %v", p, err)
	}
	if _, err := w.Deliver(mb, Target{Folder: "Work", Flags: []string{"$Label1"}}, msg()); err == nil {
		t.Fatal("new keyword added while Dovecot holds the uidlist lock")
	}
	os.WriteFile(lock, []byte(fmt.Sprintf("999999999:%s", w.sysHost)), 0o600) // holder is gone
	p, err = w.Deliver(mb, Target{Folder: "Work", Flags: []string{"$Label1", "$Junk"}}, msg())
	if err != nil || !strings.HasSuffix(p, ":2,ab") {
		t.Fatalf("new keyword after a dead holder: %q %v", p, err)
	}
	if b, _ := os.ReadFile(kwPath); string(b) != "0 $Junk\n1 $Label1\n2 Important\n" {
		t.Errorf("dovecot-keywords = %q", b)
	}
	if st, _ := os.Stat(kwPath); st.ModTime().Unix() <= future.Unix() {
		t.Errorf("mtime %v did not move past %v", st.ModTime(), future)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("uidlist lock left behind: %v", err)
	}
}

// TestKeywordsConcurrent: deliveries racing to add keywords to one folder never
// give a letter two names or lose one.
func TestKeywordsConcurrent(t *testing.T) {
	mb := Mailbox{Root: filepath.Join(t.TempDir(), "Maildir")}
	w := New(Options{Hostname: "mx"})
	var wg sync.WaitGroup
	paths := make([]string, 12)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := w.Deliver(mb, Target{Folder: "Tags", Create: true, Flags: []string{fmt.Sprintf("kw%d", i)}}, NewMessage([]byte("x\n")))
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(filepath.Join(mb.Root, ".Tags", "dovecot-keywords"))
	names := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		idx, name, _ := strings.Cut(l, " ")
		var n int
		fmt.Sscan(idx, &n)
		names[name] = string(rune('a' + n))
	}
	if len(names) != len(paths) {
		t.Fatalf("dovecot-keywords has %d names, want %d:\n%s", len(names), len(paths), b)
	}
	for i, p := range paths {
		if want := ":2," + names[fmt.Sprintf("kw%d", i)]; !strings.HasSuffix(p, want) {
			t.Errorf("message %d: %s, want suffix %s", i, filepath.Base(p), want)
		}
	}
}

// TestNewKeywordDurable: a keyword added to dovecot-keywords is durable (the
// folder directory fsynced after the rename, the file before it) before the
// message whose name carries its letter is stored: otherwise a crash can leave
// a message answered 250 with a letter the file no longer names.
func TestNewKeywordDurable(t *testing.T) {
	mb := Mailbox{Root: filepath.Join(t.TempDir(), "Maildir")}
	w := New(Options{Fsync: true, Hostname: "mx"})
	if _, err := w.Deliver(mb, Target{Folder: "Work", Create: true}, NewMessage([]byte("a\n"))); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mb.Root, ".Work")
	var synced []string
	w.syncHook = func(d string) { synced = append(synced, d) }
	if _, err := w.Deliver(mb, Target{Folder: "Work", Flags: []string{"$Label1"}}, NewMessage([]byte("b\n"))); err != nil {
		t.Fatal(err)
	}
	want := []string{dir, filepath.Join(dir, "cur")}
	if !slices.Equal(synced, want) {
		t.Errorf("synced %q, want %q (dovecot-keywords' directory before the message's)", synced, want)
	}
}

// FuzzControlFiles: maildirsize and dovecot-keywords are written by other programs
// (Dovecot, a user's tools); parsing them must never panic, and keyword slots stay
// inside a..z.
func FuzzControlFiles(f *testing.F) {
	f.Add([]byte("1024S\n581 2\n-40 -1\n"))
	f.Add([]byte("1024S,10C\n"))
	f.Add([]byte("0 $Junk\n2 Important\n25 last\n26 beyond\n-1 neg\nnospace\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if limits, _, _, ok := parseMaildirsize(data); ok && strings.Contains(limits, "\n") {
			t.Fatalf("limit line %q spans lines", limits)
		}
		names := make([]string, maxKeywords)
		parseKeywords(bytes.NewReader(data), names)
		if len(names) != maxKeywords {
			t.Fatalf("keyword table grew to %d", len(names))
		}
	})
}

// TestNewDirectoriesDurable: when a delivery creates the Maildir (or a folder), the
// directories holding the new entries are fsynced before Deliver returns — not
// only new/ after the rename — or a crash can lose a message answered 250 along
// with the directory it sits in.
func TestNewDirectoriesDurable(t *testing.T) {
	base := t.TempDir()
	home := filepath.Join(base, "example.com", "alice")
	mb := Mailbox{Root: filepath.Join(home, "Maildir"), Home: home}
	w := New(Options{Fsync: true, Hostname: "mx"})
	var synced []string
	w.syncHook = func(dir string) { synced = append(synced, dir) }
	has := func(dirs ...string) {
		t.Helper()
		for _, d := range dirs {
			if !slices.Contains(synced, d) {
				t.Errorf("%s not fsynced (synced: %q)", d, synced)
			}
		}
	}
	if _, err := w.Deliver(mb, Target{}, NewMessage([]byte("a\n"))); err != nil {
		t.Fatal(err)
	}
	has(base, filepath.Join(base, "example.com"), home, mb.Root, filepath.Join(mb.Root, "new"))
	synced = nil
	if _, err := w.Deliver(mb, Target{Folder: "Lists", Create: true}, NewMessage([]byte("b\n"))); err != nil {
		t.Fatal(err)
	}
	has(mb.Root, filepath.Join(mb.Root, ".Lists"), filepath.Join(mb.Root, ".Lists", "new"))
	// An existing Maildir costs no extra syncs.
	synced = nil
	if _, err := w.Deliver(mb, Target{Folder: "Lists"}, NewMessage([]byte("c\n"))); err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(mb.Root, ".Lists", "new")}; !slices.Equal(synced, want) {
		t.Errorf("existing folder: synced %q, want %q", synced, want)
	}
}

// TestNoChownWithoutChown: without Chown (lmtpd not running as root) the Maildir's
// cur/new/tmp are made without a chown — an unprivileged chown fails with EPERM
// and every first delivery into a new Maildir was a 451.
func TestNoChownWithoutChown(t *testing.T) {
	mb := Mailbox{Root: filepath.Join(t.TempDir(), "Maildir"), UID: 4321, GID: 4321}
	if _, err := New(Options{}).Deliver(mb, Target{Folder: "Lists", Create: true}, NewMessage([]byte("a\n"))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"cur", "new", "tmp", ".Lists/cur"} {
		st, err := os.Stat(filepath.Join(mb.Root, p))
		if err != nil {
			t.Fatal(err)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
			t.Errorf("%s owned by %d without Chown, want %d", p, uid, os.Geteuid())
		}
	}
}

// TestMessageInParts: a message given as parts (a header in front of a body,
// an empty part) is stored as the parts joined: the same file, S= and W=, and
// a further copy of it is a link.
func TestMessageInParts(t *testing.T) {
	root := t.TempDir()
	w := New(Options{Fsync: true, HardLink: true})
	parts := [][]byte{[]byte("Return-Path: <a@b>\n"), {}, []byte("Subject: x\n"), []byte("\nbody\nline 2\n")}
	joined := bytes.Join(parts, nil)
	one, err := w.Deliver(Mailbox{Root: filepath.Join(root, "one")}, Target{}, NewMessage(joined))
	if err != nil {
		t.Fatal(err)
	}
	m := NewMessage(parts...)
	if m.Size() != int64(len(joined)) || !bytes.Equal(m.Bytes(), joined) {
		t.Fatalf("size %d, bytes %q", m.Size(), m.Bytes())
	}
	mb := Mailbox{Root: filepath.Join(root, "parts")}
	p1, err := w.Deliver(mb, Target{}, m)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := w.Deliver(mb, Target{Folder: "Copy", Create: true}, m)
	if err != nil {
		t.Fatal(err)
	}
	suffix := func(p string) string {
		return p[strings.IndexByte(filepath.Base(p), ',')+len(p)-len(filepath.Base(p)):]
	}
	if suffix(p1) != suffix(one) || suffix(p2) != suffix(one) {
		t.Errorf("names %s %s, want the suffix of %s", p1, p2, one)
	}
	for _, p := range []string{p1, p2} {
		if b, _ := os.ReadFile(p); !bytes.Equal(b, joined) {
			t.Errorf("%s holds %q, want %q", p, b, joined)
		}
	}
	s1, _ := os.Stat(p1)
	s2, _ := os.Stat(p2)
	if !os.SameFile(s1, s2) {
		t.Error("the second copy is not a link")
	}
}
