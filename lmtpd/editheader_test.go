package lmtpd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEditheaderKeepsEverythingElse: with editheader, the stored message is the
// received one with exactly the edited fields changed. A header line without a
// colon ends the header for Sieve; the lines after it up to the blank line must
// still be stored, unchanged (they were dropped), and a header longer than
// lmtpd's 256 KB scan limit must not be stored twice in part. Fields nobody
// edited keep their exact bytes (spacing, folding).
func TestEditheaderKeepsEverythingElse(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "before.sieve")
	os.WriteFile(script, []byte(`require "editheader";
addheader "X-Scanned" "yes";
deleteheader "X-Drop";
addheader :last "X-Tail" "t";`), 0o644)
	e := newEnv(t, func(o *Options) {
		o.Config.Sieve.Before = []string{script}
		o.Config.DuplicatePeriod = 0
		o.Filter = NewSieveFilter(o.Config.Sieve, "+", nil, nil)
	})
	v := e.dial()
	inbox := filepath.Join(e.dir, "alice/Maildir/new")
	stored := func(msg string) string {
		t.Helper()
		for _, f := range files(t, inbox) {
			os.Remove(f)
		}
		if _, d := v.send("s@example.net", []string{"alice@example.com"}, msg); len(d) != 1 || !strings.HasPrefix(d[0], "250") {
			t.Fatalf("replies %q", d)
		}
		fs := files(t, inbox)
		if len(fs) != 1 {
			t.Fatalf("INBOX has %d", len(fs))
		}
		b, _ := os.ReadFile(fs[0])
		// Drop lmtpd's trace headers (they end with the Received "; date" line).
		s := string(b)
		i := strings.Index(s, "X-Scanned: yes\n")
		if i < 0 {
			t.Fatalf("X-Scanned not added:\n%s", s)
		}
		return s[i:]
	}

	odd := "X-Drop: gone\nSubject:no-space   \nX-Mailer junk line without colon\nFrom: Sender <sender@example.net>\n" +
		"Subject: hello\nMessage-ID: <odd@example.net>\nMIME-Version: 1.0\nContent-Type: text/plain\n\nbody\n"
	// Sieve's header ends at the junk line: X-Tail goes before it, X-Drop is
	// gone, all the rest is byte for byte the message as received.
	want := "X-Scanned: yes\nSubject:no-space   \nX-Tail: t\nX-Mailer junk line without colon\nFrom: Sender <sender@example.net>\n" +
		"Subject: hello\nMessage-ID: <odd@example.net>\nMIME-Version: 1.0\nContent-Type: text/plain\n\nbody\n"
	if got := stored(odd); got != want {
		t.Errorf("odd header line: stored\n%q\nwant\n%q", got, want)
	}

	folded := "X-Drop: a\nReceived: from a\n\tby b;  x\nTo:  alice@example.com ,\n  carol@example.com\n\nbody\n"
	if got, want := stored(folded), "X-Scanned: yes\nReceived: from a\n\tby b;  x\nTo:  alice@example.com ,\n  carol@example.com\nX-Tail: t\n\nbody\n"; got != want {
		t.Errorf("folded fields: stored\n%q\nwant\n%q", got, want)
	}

	// A header beyond maxHeaderScan: nothing repeated, nothing lost.
	var big strings.Builder
	for big.Len() <= maxHeaderScan+1024 {
		big.WriteString("X-Filler: " + strings.Repeat("f", 70) + "\n")
	}
	huge := big.String() + "Subject: big\n\nbody\n"
	got := stored(huge)
	if want := "X-Scanned: yes\n" + big.String() + "Subject: big\nX-Tail: t\n\nbody\n"; got != want {
		t.Errorf("huge header: stored %d bytes, want %d (X-Filler %d times, want %d)", len(got), len(want),
			strings.Count(got, "X-Filler"), strings.Count(want, "X-Filler"))
	}
}
