package lmtpd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/directory"
)

// FuzzHeaders: the header helpers run on attacker-controlled input before anything
// else; they must never panic and the queue ID must stay a safe token.
func FuzzHeaders(f *testing.F) {
	f.Add([]byte(testMsg))
	f.Add([]byte("X-Spam-Status: Yes, score=9 tests=A,B\nX-Spam-Score: x\n\n"))
	f.Add([]byte("Received: by h (Postfix) with ESMTP id ;\n"))
	f.Add([]byte("\n\nbody"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr := parseHeader(headerBlock(b))
		id := postfixQueueID(hdr)
		if id != "" && !validQueueID(id) {
			t.Fatalf("bad queue id %q", id)
		}
		parseSpam(hdr)
		s := headerSafe(string(b))
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatal("headerSafe left a line break")
		}
	})
}

// FuzzMailLocation: whatever login the directory returns, the expanded Maildir
// stays below the configured prefix.
func FuzzMailLocation(f *testing.F) {
	for _, s := range []string{"alice", "alice@example.com", "..", "a/../../etc", "x@..", "%n", "a\x00b", "@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, login string) {
		u := &directory.User{Login: login, Home: "/home/x"}
		p, err := mailLocation("/var/vmail/%d/%n/Maildir", u, "rcpt@example.com")
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/var/vmail/") || filepath.Clean(p) != p || strings.Contains(p, "\x00") {
			t.Fatalf("login %q → %q escapes /var/vmail", login, p)
		}
		rel, _ := filepath.Rel("/var/vmail", p)
		if parts := strings.Split(rel, "/"); len(parts) != 3 || parts[2] != "Maildir" {
			t.Fatalf("login %q → %q has %d levels", login, p, len(parts))
		}
	})
}
