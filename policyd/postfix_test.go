package policyd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"

	"github.com/dovetail-mail/dovetail/directory/static"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/store/mem"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestPostfixEndToEnd drives policyd through a REAL Postfix (check_policy_service)
// with swaks. XCLIENT (allowed from loopback) lets one Postfix play many clients:
// each swaks run presents its own client address and name to smtpd, which
// passes them to the policy service exactly as for a real remote client.
func TestPostfixEndToEnd(t *testing.T) {
	testenv.Need(t, testenv.PostfixMaster, "swaks")
	if testing.Short() {
		t.Skip("real Postfix: not in -short")
	}
	cfg := DefaultConfig()
	cfg.Hostname = "mx.test"
	cfg.RateLimit.Enabled = false
	cfg.Greylist.Delay = config.Duration(time.Second)
	cfg.Greylist.AutoWhitelistAfter = 1
	cfg.Greylist.AutoWhitelistInterval = 0
	cfg.Greylist.ExemptNetworks = nil   // Postfix itself talks from 127.0.0.1
	cfg.Greylist.ExemptRecipients = nil // so postmaster@ is greylisted too
	cfg.Recipients.Enabled = true
	cfg.Recipients.LocalDomains = []string{"example.com"}
	cfg.SenderLogin.Enabled = true
	cfg.SPF.Enabled = true
	cfg.SPF.ExemptNetworks = nil
	cfg.Access.Enabled = true
	cfg.Access.GeoIPDatabase = writeMMDB(t, map[string]string{"198.51.100.0/24": "RU", "203.0.113.0/24": "NL"})
	cfg.Access.DenyCountries = []string{"RU"}
	dns := &mockdns.Resolver{Zones: map[string]mockdns.Zone{
		"spf-fail.example.": {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}},
	}}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte(
		"alice:{PLAIN}pw:8:8::::mail=alice@example.com,postmaster@example.com\n"+
			"bob:{PLAIN}pw:8:8::::mail=bob@example.com status=invalid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	scfg := static.DefaultConfig()
	scfg.Path = users
	dir, err := static.New(scfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	ts := startServer(t, cfg, Deps{Store: mem.New(), Directory: dir, Resolver: dns})

	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		PolicyService: "inet:" + ts.addr,
		Extra: map[string]string{
			"smtpd_authorized_xclient_hosts": "127.0.0.0/8",
			// Every message must come back to policyd, never from a cached answer.
			"smtpd_policy_service_max_idle": "10s",
		},
	})
	send := func(addr, name, from, to string, extra ...string) (string, int) {
		args := append([]string{"--xclient-addr", addr, "--xclient-name", name, "--from", from, "--to", to, "--helo", name}, extra...)
		return testenv.Swaks(t, pf.SMTPAddr, args...)
	}
	expect := func(what, out string, code int, wantCode int, wantText string) {
		t.Helper()
		if (wantCode == 0) != (code == 0) || !strings.Contains(out, wantText) {
			t.Fatalf("%s: swaks exit %d, want %d and %q in:\n%s\npolicyd log:\n%s", what, code, wantCode, wantText, out, ts.logs.String())
		}
	}

	// Greylisting: deferred 450 at first, accepted after the delay.
	out, code := send("203.0.113.7", "mail.sender.example", "news@sender.example", "alice@example.com")
	expect("first attempt", out, code, 24, "450 4.7.1 <alice@example.com>: Recipient address rejected: Greylisted")
	time.Sleep(1100 * time.Millisecond)
	out, code = send("203.0.113.7", "mail.sender.example", "news@sender.example", "alice@example.com")
	expect("retry after the delay", out, code, 0, "250 2.0.0 Ok: queued")
	if !strings.Contains(ts.logs.String(), "X-Greylist: delayed") {
		t.Errorf("no X-Greylist PREPEND logged:\n%s", ts.logs.String())
	}
	// Auto-whitelisted: a new triplet from the same client passes at once.
	out, code = send("203.0.113.7", "mail.sender.example", "other@sender.example", "postmaster@example.com")
	expect("auto-whitelisted client", out, code, 0, "250 2.0.0 Ok: queued")

	// Unknown and disabled local recipients: 550 at RCPT.
	out, code = send("203.0.113.7", "mail.sender.example", "news@sender.example", "nobody@example.com")
	expect("unknown recipient", out, code, 24, "550 5.1.1 <nobody@example.com>: Recipient address rejected")
	// Postfix takes the domain with a trailing dot for example.com (and
	// queues the message for it): the dot must not get past the check.
	out, code = send("203.0.113.7", "mail.sender.example", "news@sender.example", "nobody@example.com.")
	expect("unknown recipient, trailing dot", out, code, 24, "550 5.1.1 <nobody@example.com.>: Recipient address rejected")
	out, code = send("203.0.113.7", "mail.sender.example", "news@sender.example", "bob@example.com")
	expect("disabled recipient", out, code, 24, "550 5.2.1")

	// SPF fail: rejected.
	out, code = send("192.0.2.200", "mx.elsewhere.example", "ceo@spf-fail.example", "alice@example.com")
	expect("SPF pass (greylisted, not rejected)", out, code, 24, "450 4.7.1")
	out, code = send("198.18.0.9", "mx.elsewhere.example", "ceo@spf-fail.example", "alice@example.com")
	expect("SPF fail", out, code, 24, "550 5.7.23")

	// Country deny (the test MMDB maps 198.51.100.0/24 to RU).
	out, code = send("198.51.100.20", "mx.ru.example", "ivan@ru.example", "alice@example.com")
	expect("country deny", out, code, 24, "554 5.7.1")
}

// TestPostfixSASLRateLimit: authenticated submission through a REAL Postfix with
// Dovecot SASL: alice over her hourly limit is deferred, carol is not, and alice
// may not send as bob.
func TestPostfixSASLRateLimit(t *testing.T) {
	testenv.Need(t, testenv.PostfixMaster, "swaks", "dovecot")
	if testing.Short() {
		t.Skip("real Postfix: not in -short")
	}
	dir := testDir()
	dir.users["carol"] = dirUser("carol", "carol@example.com")
	cfg := sharedLimitConfig()
	cfg.RateLimit.Limits[0].Messages = 2
	ts := startServer(t, cfg, Deps{Store: mem.New(), Directory: dir})
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{Auth: true})
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SASLPath:              "inet:" + dc.AuthAddr,
		PolicyService:         "inet:" + ts.addr,
		RecipientRestrictions: []string{"check_policy_service inet:" + ts.addr, "permit_sasl_authenticated", "reject"},
	})
	send := func(login, from string) (string, int) {
		return testenv.Swaks(t, pf.SMTPAddr, "--auth", "PLAIN", "--auth-user", login, "--auth-password", login+"pw",
			"--from", from, "--to", "someone@example.com")
	}
	for i := 1; i <= 2; i++ {
		if out, code := send("alice", "alice@example.com"); code != 0 {
			t.Fatalf("alice message %d: exit %d\n%s\npolicyd log:\n%s", i, code, out, ts.logs.String())
		}
	}
	if out, code := send("alice", "alice@example.com"); code == 0 || !strings.Contains(out, "450 4.7.1") || !strings.Contains(out, "Message rate limit exceeded") {
		t.Fatalf("alice over the limit: exit %d\n%s", code, out)
	}
	if out, code := send("carol", "carol@example.com"); code != 0 {
		t.Fatalf("carol: exit %d\n%s", code, out)
	}
	if out, code := send("carol", "alice@example.com"); code == 0 || !strings.Contains(out, "553 5.7.1") {
		t.Fatalf("carol sending as alice: exit %d\n%s", code, out)
	}
}
