package lmtpd

import (
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/directory"
)

// TestVacationSkip: RFC 5230 §4.5 / RFC 3834 §2 — never answer lists, bulk,
// automatic mail, system senders or the user's own addresses; answer only when
// the user is an explicit recipient (a +detail address counts).
func TestVacationSkip(t *testing.T) {
	user := &directory.User{Login: "alice", Addresses: []string{"alice@example.com", "a.smith@example.com"}}
	const to = "To: Alice <alice@example.com>\n"
	cases := []struct {
		name, from, hdr, rcpt, skip string
	}{
		{"plain", "bob@example.net", to, "alice@example.com", ""},
		{"alias address in Cc", "bob@example.net", "To: x@y\nCc: A.Smith@example.com\n", "alice@example.com", ""},
		{"detail address", "bob@example.net", "To: alice+lists@example.com\n", "alice+lists@example.com", ""},
		{"null sender", "", to, "alice@example.com", "null sender"},
		{"MAILER-DAEMON", "MAILER-DAEMON@example.net", to, "alice@example.com", "system or list sender"},
		{"owner- sender", "owner-dev@lists.example.org", to, "alice@example.com", "system or list sender"},
		{"-request sender", "dev-request@lists.example.org", to, "alice@example.com", "system or list sender"},
		{"auto-submitted", "bob@example.net", to + "Auto-Submitted: auto-replied\n", "alice@example.com", "auto-submitted"},
		{"auto-submitted no", "bob@example.net", to + "Auto-Submitted: no\n", "alice@example.com", ""},
		{"precedence bulk", "bob@example.net", to + "Precedence: bulk\n", "alice@example.com", "precedence bulk"},
		{"precedence list", "bob@example.net", to + "Precedence: list\n", "alice@example.com", "precedence list"},
		{"list-id", "bob@example.net", to + "List-Id: <dev.example.org>\n", "alice@example.com", "mailing list"},
		{"list-unsubscribe", "bob@example.net", to + "List-Unsubscribe: <mailto:u@x>\n", "alice@example.com", "mailing list"},
		{"own address", "Alice@Example.com", to, "alice@example.com", "own address"},
		{"spam", "bob@example.net", to + "X-Spam-Flag: YES\n", "alice@example.com", "spam"},
		{"not a recipient", "bob@example.net", "To: everyone@example.com\n", "alice@example.com", "not an explicit recipient"},
	}
	for _, c := range cases {
		got := vacationSkip(c.from, parseHeader([]byte(c.hdr)), user, &Action{}, c.rcpt)
		if (c.skip == "") != (got == "") || !strings.Contains(got, c.skip) {
			t.Errorf("%s: skip %q, want %q", c.name, got, c.skip)
		}
	}
}

// TestMailLocation: Dovecot-style variables, and no path escapes from bad entries.
func TestMailLocation(t *testing.T) {
	u := &directory.User{Login: "alice", Home: "/home/alice"}
	for loc, want := range map[string]string{
		"~/Maildir":                   "/home/alice/Maildir",
		"%h/mail":                     "/home/alice/mail",
		"/var/vmail/%d/%n/Maildir":    "/var/vmail/example.com/alice/Maildir",
		"/var/vmail/%u/100%%/Maildir": "/var/vmail/alice/100%/Maildir",
	} {
		got, err := mailLocation(loc, u, "Alice+x@Example.COM")
		if err != nil || got != want {
			t.Errorf("%s → %q %v, want %q", loc, got, err, want)
		}
	}
	if got, _ := mailLocation("/var/vmail/%d/%n", &directory.User{Login: "bob@other.org"}, "b@example.com"); got != "/var/vmail/other.org/bob" {
		t.Errorf("domain from the login: %q", got)
	}
	for _, bad := range []*directory.User{{Login: ".."}, {Login: "a/../../etc"}, {Login: ""}} {
		if p, err := mailLocation("/var/vmail/%u/Maildir", bad, "x@example.com"); err == nil || IsPermanent(err) {
			t.Errorf("login %q → %q %v, want a temporary error", bad.Login, p, err)
		}
	}
	if _, err := mailLocation("~/Maildir", &directory.User{Login: "nohome"}, "x@example.com"); err == nil || IsPermanent(err) {
		t.Errorf("no home: %v, want a temporary error", err)
	}
	cfg := DefaultConfig()
	cfg.MailLocation = "/var/mail/shared"
	if cfg.Validate() == nil {
		t.Error("a mail_location shared by every user validated")
	}
}
