package lmtpd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/store/mem"
)

// stored returns the messages in a Maildir folder (new and cur).
func stored(t *testing.T, folder string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		for _, f := range files(t, filepath.Join(folder, sub)) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	return out
}

// sieveEnv runs before (a global script) and, if set, the user script of alice.
func sieveEnv(t *testing.T, before, user string) *env {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "before.sieve")
	if err := os.WriteFile(script, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) {
		o.Config.Sieve.Before = []string{script}
		o.Filter = NewSieveFilter(o.Config.Sieve, "+", nil, nil)
	})
	if user != "" {
		home := filepath.Join(e.dir, "alice")
		os.MkdirAll(home, 0o755)
		if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(user), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestEditheaderPerAction: each stored or forwarded copy carries the header as
// it was when the script took the action. The forward went out with the
// original header (the deleted field still in, the added one missing), and
// every stored copy got the final header.
func TestEditheaderPerAction(t *testing.T) {
	e := sieveEnv(t, `require ["editheader","copy","fileinto","mailbox"];
fileinto :create :copy "Early";
deleteheader "X-Internal-Secret";
addheader "X-Forwarded-By" "sieve";
redirect :copy "x@elsewhere.example";
addheader "X-Late" "1";`, "")
	msg := "From: s@example.net\nX-Internal-Secret: 42\nSubject: hi\nMessage-ID: <e1@example.net>\n\nbody\n"
	if _, d := e.dial().send("s@example.net", []string{"alice@example.com"}, msg); len(d) != 1 || !strings.HasPrefix(d[0], "250") {
		t.Fatalf("replies %q", d)
	}
	if len(e.sender.sent) != 1 {
		t.Fatalf("sent %d", len(e.sender.sent))
	}
	fwd := e.sender.sent[0]
	if strings.Contains(fwd, "X-Internal-Secret") || !strings.Contains(fwd, "X-Forwarded-By: sieve\n") || strings.Contains(fwd, "X-Late") {
		t.Errorf("forwarded copy:\n%s", fwd)
	}
	early := stored(t, filepath.Join(e.dir, "alice/Maildir/.Early"))
	if len(early) != 1 || !strings.Contains(early[0], "X-Internal-Secret: 42\n") || strings.Contains(early[0], "X-Forwarded-By") {
		t.Errorf("copy filed before the edits: %q", early)
	}
	inbox := stored(t, filepath.Join(e.dir, "alice/Maildir"))
	if len(inbox) != 1 || strings.Contains(inbox[0], "X-Internal-Secret") || !strings.Contains(inbox[0], "X-Forwarded-By: sieve\n") || !strings.Contains(inbox[0], "X-Late: 1\n") {
		t.Errorf("implicit keep: %q", inbox)
	}
}

// TestRuntimeErrorKeepsEarlierScripts: a runtime error in the user script
// (five redirects, over the limit) drops only that script's actions; the
// before script's fileinto has been done, as in Pigeonhole. Everything was
// discarded but the implicit keep.
func TestRuntimeErrorKeepsEarlierScripts(t *testing.T) {
	e := sieveEnv(t, `require ["fileinto","copy","mailbox"]; fileinto :create :copy "Archive";`,
		`require ["fileinto","copy"]; fileinto :copy "Mine";
redirect "a@x.example"; redirect "b@x.example"; redirect "c@x.example"; redirect "d@x.example"; redirect "e@x.example";`)
	if _, d := e.dial().send("s@example.net", []string{"alice@example.com"}, testMsg); len(d) != 1 || !strings.HasPrefix(d[0], "250") {
		t.Fatalf("replies %q", d)
	}
	box := filepath.Join(e.dir, "alice/Maildir")
	if n := len(stored(t, filepath.Join(box, ".Archive"))); n != 1 {
		t.Errorf("Archive has %d", n)
	}
	if n := len(stored(t, box)); n != 1 {
		t.Errorf("INBOX has %d", n)
	}
	if _, err := os.Stat(filepath.Join(box, ".Mine")); err == nil {
		t.Error("the failing script's fileinto was carried out")
	}
	if len(e.sender.sent) != 0 {
		t.Errorf("the failing script's redirects went out: %d", len(e.sender.sent))
	}
}

// TestRedirectLoopWithoutMessageID: a message without Message-ID that a user
// redirects to themself is forwarded once, marked; fed back in, it is kept
// instead of going round again. Without a Message-ID nothing was tracked and
// nothing marked the copy.
func TestRedirectLoopWithoutMessageID(t *testing.T) {
	ff := &fakeFilter{acts: map[string][]Action{"alice": {{Type: ActRedirect, Address: "alice@example.com"}}}}
	e := newEnv(t, func(o *Options) { o.Filter = ff })
	v := e.dial()
	msg := "From: s@example.net\nTo: alice@example.com\nSubject: loop\n\nbody\n"
	if _, d := v.send("s@example.net", []string{"alice@example.com"}, msg); !strings.HasPrefix(d[0], "250") {
		t.Fatalf("replies %q", d)
	}
	if len(e.sender.sent) != 1 {
		t.Fatalf("sent %d", len(e.sender.sent))
	}
	fwd := e.sender.sent[0][strings.IndexByte(e.sender.sent[0], '\n')+1:]
	if !strings.HasPrefix(fwd, "X-Sieve-Redirected-From: alice@example.com\nMessage-ID: <") || !strings.HasSuffix(fwd, msg) {
		t.Fatalf("forwarded copy:\n%s", fwd)
	}
	inbox := filepath.Join(e.dir, "alice/Maildir")
	for i := 0; i < 2; i++ {
		// Postfix hands the forward back (twice, to be sure).
		if _, d := v.send("s@example.net", []string{"alice@example.com"}, fwd); !strings.HasPrefix(d[0], "250") {
			t.Fatalf("replies %q", d)
		}
	}
	if len(e.sender.sent) != 1 {
		t.Errorf("forwarded %d times", len(e.sender.sent))
	}
	// The first is kept (the implicit keep stands, as in Pigeonhole); the second
	// is a duplicate of its new Message-ID.
	if n := len(stored(t, inbox)); n != 1 {
		t.Errorf("INBOX has %d, want the looping copy kept", n)
	}
	// A retry of the original (no Message-ID) is recognised as forwarded.
	v.send("s@example.net", []string{"alice@example.com"}, msg)
	if len(e.sender.sent) != 1 {
		t.Errorf("retry forwarded again: %d", len(e.sender.sent))
	}
	// List-Id and Resent-Message-ID are part of the key: the same message through
	// a list is another forward.
	v.send("s@example.net", []string{"alice@example.com"}, "List-Id: <l.example.net>\n"+msg)
	v.send("s@example.net", []string{"alice@example.com"}, "Resent-Message-ID: <r1@example.net>\n"+msg)
	if len(e.sender.sent) != 3 {
		t.Errorf("sent %d, want 3", len(e.sender.sent))
	}
}

// TestSieveDuplicateStoreDown: when the store cannot say whether a duplicate
// id was seen, the recipient whose script asks gets 451 4.3.0 and nothing is
// stored for them; the other recipient of the same message is delivered.
// Every store error used to read as "not seen": `if duplicate { discard; }`
// kept the copy the user wanted dropped, silently and for good. Once the
// store answers (not found), the message is delivered, and a second copy is
// discarded by the script.
func TestSieveDuplicateStoreDown(t *testing.T) {
	st := mem.New()
	e := newEnv(t, func(o *Options) {
		o.Store = st
		o.Config.DuplicatePeriod = 0 // lmtpd's own Message-ID check would hide the script's
		o.Filter = NewSieveFilter(o.Config.Sieve, "+", nil, nil)
	})
	home := filepath.Join(e.dir, "alice")
	os.MkdirAll(home, 0o755)
	if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"),
		[]byte(`require "duplicate"; if duplicate { discard; stop; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	alice, carol := filepath.Join(e.dir, "alice/Maildir"), filepath.Join(e.dir, "carol/Maildir")
	v := e.dial()

	st.Down = true // the store cannot answer, as an unreachable backend
	_, d := v.send("s@example.net", []string{"alice@example.com", "carol@example.com"}, testMsg)
	if len(d) != 2 || !strings.HasPrefix(d[0], "451 4.3.0") || !strings.HasPrefix(d[1], "250") {
		t.Fatalf("store down: replies %q, want 451 4.3.0 for alice, 250 for carol", d)
	}
	if n := len(stored(t, alice)); n != 0 {
		t.Errorf("store down: alice's INBOX has %d", n)
	}
	if n := len(stored(t, carol)); n != 1 {
		t.Errorf("store down: carol's INBOX has %d", n)
	}

	st.Down = false // the retry: the store answers ErrNotFound
	if _, d := v.send("s@example.net", []string{"alice@example.com"}, testMsg); len(d) != 1 || !strings.HasPrefix(d[0], "250") {
		t.Fatalf("store up: replies %q", d)
	}
	if n := len(stored(t, alice)); n != 1 {
		t.Errorf("store up: alice's INBOX has %d, want 1", n)
	}
	if _, d := v.send("s@example.net", []string{"alice@example.com"}, testMsg); len(d) != 1 || !strings.HasPrefix(d[0], "250") {
		t.Fatalf("second copy: replies %q", d)
	}
	if n := len(stored(t, alice)); n != 1 {
		t.Errorf("second copy: alice's INBOX has %d, want it discarded", n)
	}
}

// TestSieveCutShortByDeadlineIsTemporary: when the delivery's deadline (one
// for all recipients of a message, deliveryTimeout) has run out by the time a
// recipient's scripts run — the earlier recipients' submissions and stores
// took it — the Sieve run is aborted by our clock, not by the script. That
// recipient is tempfailed and nothing is stored, so Postfix retries with the
// rules applied. It used to count as a script runtime error: the message went
// into INBOX by the implicit keep, past the admin's spam rule and the user's
// discard or forward, silently and for good.
func TestSieveCutShortByDeadlineIsTemporary(t *testing.T) {
	// Enough commands that the interpreter looks at the context (every 16
	// steps), as any real spam rule set does.
	before := `require ["fileinto","mailbox"];` + strings.Repeat(`if header :is "X-Nope" "1" { stop; }`, 20) +
		`fileinto :create "Junk";`
	e := sieveEnv(t, before, "")
	dv := e.srv.Deliverer()
	rc, err := dv.Resolve(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the message's deadline is over
	var got error
	dv.Deliver(ctx, &Delivery{From: "s@example.net", Recipients: []Recipient{rc}, Data: []byte(testMsg), SessionID: "t1"},
		func(_ int, err error) { got = err })
	if rep := dv.replyFor("alice@example.com", got); rep == nil || rep.Code != 451 {
		t.Fatalf("reply %v (error %v), want 451", rep, got)
	}
	box := filepath.Join(e.dir, "alice/Maildir")
	if n := len(stored(t, box)) + len(stored(t, filepath.Join(box, ".Junk"))); n != 0 {
		t.Errorf("%d copies stored without the rules", n)
	}

	// With time left, the same message goes where the rule says.
	dv.Deliver(context.Background(), &Delivery{From: "s@example.net", Recipients: []Recipient{rc}, Data: []byte(testMsg), SessionID: "t2"},
		func(_ int, err error) { got = err })
	if got != nil {
		t.Fatal(got)
	}
	if n := len(stored(t, filepath.Join(box, ".Junk"))); n != 1 {
		t.Errorf("Junk has %d", n)
	}
}
