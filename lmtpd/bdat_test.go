package lmtpd

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CHUNKING is advertised (go-smtp always does). A BDAT transaction that the
// client abandons (RSET, a disconnect) ends LMTPData in go-smtp's BDAT
// goroutine while the connection goroutine resets the session and the next
// transaction begins: the state LMTPData works on must not be the one Reset,
// MAIL and RCPT change (a data race, and a nil Deliverer panic that go-smtp
// logs as "panic serving"), and nothing of the abandoned message is stored.
//
// Each abandoned BDAT gets a connection of its own: go-smtp itself races on
// its dataResult channel when a second BDAT follows an abandoned one on the
// same connection.
func TestBDATAbortedWhileSessionResets(t *testing.T) {
	e := newEnv(t, nil)
	const n = 10
	for i := 0; i < n; i++ {
		v := e.dial()
		if r := v.cmd("MAIL FROM:<s@example.net>"); !strings.HasPrefix(r, "250") {
			t.Fatalf("MAIL: %s", r)
		}
		if r := v.cmd("RCPT TO:<alice@example.com>"); !strings.HasPrefix(r, "250") {
			t.Fatalf("RCPT: %s", r)
		}
		chunk := "Subject: part\r\n\r\nhalf"
		fmt.Fprintf(v.c, "BDAT %d\r\n%s", len(chunk), chunk)
		if r := v.reply(); !strings.HasPrefix(r, "250") {
			t.Fatalf("BDAT: %s", r)
		}
		if r := v.cmd("RSET"); !strings.HasPrefix(r, "250") {
			t.Fatalf("RSET: %s", r)
		}
		// The next transaction on the connection is delivered normally.
		_, d := v.send("s@example.net", []string{"alice@example.com", "carol@example.com"}, "Subject: whole\n\nbody\n")
		if len(d) != 2 || !strings.HasPrefix(d[0], "250 2.0.0 <alice@example.com>") || !strings.HasPrefix(d[1], "250 2.0.0 <carol@example.com>") {
			t.Fatalf("DATA after an abandoned BDAT: %q", d)
		}
		v.c.Close()
	}
	time.Sleep(50 * time.Millisecond)
	if fs := files(t, filepath.Join(e.dir, "alice/Maildir/new")); len(fs) != n {
		t.Fatalf("want only the %d complete messages stored, got %d", n, len(fs))
	}
	for _, f := range files(t, filepath.Join(e.dir, "alice/Maildir/tmp")) {
		t.Errorf("left in tmp/: %s", f)
	}
}
