package maildir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// baseName is a Maildir file name without its ":2,<flags>" info: the name
// Dovecot's dovecot-uidlist keys a message by.
func baseName(name string) string {
	b, _, _ := strings.Cut(name, ":")
	return b
}

// Two copies of one message in one folder (a keep into the +detail mailbox
// and a fileinto with flags into the same one, or "a.b" and "a/b") must not
// share a base name: Dovecot keys dovecot-uidlist by it and takes the second
// for a duplicate to rename ("Duplicate file entry"). A hard link is only for
// another folder; here the copy gets a name of its own.
func TestHardLinkNeverTwiceInOneFolder(t *testing.T) {
	w := New(Options{HardLink: true, Hostname: "h"})
	mb := Mailbox{Root: filepath.Join(t.TempDir(), "Maildir")}
	msg := NewMessage([]byte("Subject: x\n\nbody\n"))
	for _, tg := range []Target{{Folder: "a.b", Create: true}, {Folder: "a/b", Flags: []string{`\Seen`}}, {Folder: "INBOX"}} {
		if _, err := w.Deliver(mb, tg, msg); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]string{}
	dir := filepath.Join(mb.Root, ".a.b")
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if prev, ok := seen[baseName(e.Name())]; ok {
				t.Errorf("one base name twice in .a.b: %s and %s/%s", prev, sub, e.Name())
			}
			seen[baseName(e.Name())] = sub + "/" + e.Name()
		}
	}
	if len(seen) != 2 {
		t.Errorf("copies in .a.b: %v, want 2", seen)
	}
	// Another folder still gets the link (same inode).
	inbox, _ := os.ReadDir(filepath.Join(mb.Root, "new"))
	if len(inbox) != 1 {
		t.Fatalf("INBOX: %d files", len(inbox))
	}
	a, _ := os.Stat(filepath.Join(mb.Root, "new", inbox[0].Name()))
	var first string
	for k, v := range seen {
		if strings.HasPrefix(v, "new/") {
			first = k
		}
	}
	b, err := os.Stat(filepath.Join(dir, "new", first))
	if err != nil || !os.SameFile(a, b) {
		t.Errorf("INBOX copy is not a link to the first one (%v)", err)
	}
}
