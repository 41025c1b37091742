package lmtpd

import (
	"mime"
	"strings"
	"testing"
	"time"

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

// TestVacationLongFieldsFolded: a vacation reply to a message with a long
// non-ASCII subject and a long References field keeps every line within 998
// characters (RFC 5322 §2.1.1), folded at spaces; unfolded, the fields read as
// before.
func TestVacationLongFieldsFolded(t *testing.T) {
	subject := strings.TrimSpace(strings.Repeat("日本語のメール ", 80))
	var refs []string
	for i := range 60 {
		refs = append(refs, "<"+strings.Repeat("r", 20)+string(rune('a'+i%26))+"@example.org>")
	}
	hdr := []field{
		{"Subject", subject},
		{"Message-ID", "<orig@example.org>"},
		{"References", strings.Join(refs, " ")},
	}
	out := string(buildVacation(&directory.User{Login: "u"}, "u@example.com", "s@example.org", hdr, &Action{Reason: "away"}, "mx.example.com", time.Unix(0, 0)))
	head, _, _ := strings.Cut(out, "\n\n")
	for _, l := range strings.Split(head, "\n") {
		// Longer than 78 only where no space allows a fold: one word after
		// the field name.
		if _, rest, _ := strings.Cut(strings.TrimSpace(l), " "); len(l) > 78 && strings.Contains(rest, " ") || len(l) > 998 {
			t.Errorf("line of %d characters: %.80q…", len(l), l)
		}
	}
	parsed := parseHeader([]byte(head + "\n"))
	subj, _ := getHeader(parsed, "Subject")
	if got, err := new(mime.WordDecoder).DecodeHeader(subj); err != nil || got != "Auto: "+subject {
		t.Errorf("subject unfolds to %q (%v)", got, err)
	}
	if got, _ := getHeader(parsed, "References"); got != strings.Join(refs, " ")+" <orig@example.org>" {
		t.Errorf("References unfolds to %q", got)
	}
}
