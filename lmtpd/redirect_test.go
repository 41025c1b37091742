package lmtpd

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestFailedRedirectNeverLosesTheMessage: a redirect whose submission fails must
// not be answered 250 with nothing stored or sent. A temporary failure is a 451
// (Pigeonhole's SIEVE_EXEC_TEMP_FAILURE) and leaves neither the redirect marker
// nor the Message-ID duplicate mark behind, so Postfix's retry forwards the
// message; a permanent one keeps the message in INBOX (implicit keep).
func TestFailedRedirectNeverLosesTheMessage(t *testing.T) {
	ff := &fakeFilter{acts: map[string][]Action{"alice": {{Type: ActRedirect, Address: "x@elsewhere.example"}}}}
	e := newEnv(t, func(o *Options) { o.Filter = ff })
	e.sender.err = errors.New("sendmail: postdrop: unable to connect")
	v := e.dial()
	inbox := filepath.Join(e.dir, "alice/Maildir/new")

	_, d := v.send("s@example.net", []string{"alice@example.com"}, testMsg)
	if len(d) != 1 || !strings.HasPrefix(d[0], "451 ") {
		t.Fatalf("failed redirect answered %q, want 451", d)
	}
	if n := len(files(t, inbox)); n != 0 {
		t.Errorf("INBOX has %d after a temporary redirect failure", n)
	}
	// Postfix retries; the submission works again: the message is forwarded now.
	e.sender.err = nil
	_, d = v.send("s@example.net", []string{"alice@example.com"}, testMsg)
	if len(d) != 1 || !strings.HasPrefix(d[0], "250 ") {
		t.Fatalf("retry answered %q", d)
	}
	if e.sender.attempts != 2 || len(e.sender.sent) != 1 || !strings.Contains(e.sender.sent[0], "to=[x@elsewhere.example]") {
		t.Fatalf("retry did not forward: %d attempts, sent %q", e.sender.attempts, e.sender.sent)
	}
	// A further retry of the same message does not forward twice.
	v.send("s@example.net", []string{"alice@example.com"}, testMsg)
	if len(e.sender.sent) != 1 {
		t.Errorf("forwarded %d times", len(e.sender.sent))
	}

	// Permanently refused: implicit keep into INBOX.
	e.sender.err = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	_, d = v.send("s@example.net", []string{"alice@example.com"}, strings.Replace(testMsg, "m1@", "perm@", 1))
	if len(d) != 1 || !strings.HasPrefix(d[0], "250 ") {
		t.Fatalf("permanent redirect failure answered %q", d)
	}
	if n := len(files(t, inbox)); n != 1 {
		t.Errorf("INBOX has %d after a permanent redirect failure, want the message kept", n)
	}

	// No sender at all is permanent as well: kept, not dropped.
	e2 := newEnv(t, func(o *Options) { o.Filter, o.Sender = ff, nil })
	if _, d := e2.dial().send("s@example.net", []string{"alice@example.com"}, testMsg); !strings.HasPrefix(d[0], "250 ") {
		t.Fatalf("no sender: %q", d)
	}
	if n := len(files(t, filepath.Join(e2.dir, "alice/Maildir/new"))); n != 1 {
		t.Errorf("no sender: INBOX has %d", n)
	}

	// keep + redirect: the stored copy stands (a retry would store it twice).
	ff.acts["carol"] = []Action{{Type: ActKeep}, {Type: ActRedirect, Address: "y@elsewhere.example"}}
	e.sender.err = errors.New("timeout")
	if _, d := v.send("s@example.net", []string{"carol@example.com"}, testMsg); !strings.HasPrefix(d[0], "250 ") {
		t.Fatalf("keep+redirect: %q", d)
	}
	if n := len(files(t, filepath.Join(e.dir, "carol/Maildir/new"))); n != 1 {
		t.Errorf("keep+redirect: INBOX has %d", n)
	}
}

func TestPermanentSendError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&smtp.SMTPError{Code: 550}, true},
		{&smtp.SMTPError{Code: 451}, false},
		{errors.New("dial tcp: connection refused"), false},
		{(&SendmailSender{Path: "/bin/true"}).Send(t.Context(), "a@b", []string{"-oQ/tmp"}, nil), true},
	} {
		if got := permanentSendError(c.err); got != c.want {
			t.Errorf("%v: permanent = %v, want %v", c.err, got, c.want)
		}
	}
}
