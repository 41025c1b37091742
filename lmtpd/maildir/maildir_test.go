package maildir

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	for _, bad := range []string{"a..b", ".hidden", "x/", "a\nb", strings.Repeat("x", 300)} {
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
		if _, err := w.Deliver(mb, Target{}, NewMessage(msg.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Deliver(mb, Target{}, NewMessage(msg.Data)); err == nil {
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
