package policyd

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// sharedLimitConfig: 5 messages per hour per SASL user, plus sender/login match.
func sharedLimitConfig() Config {
	cfg := testConfig()
	cfg.SenderLogin.Enabled = true
	cfg.RateLimit.Enabled = true
	cfg.RateLimit.Limits = []RateLimit{
		{Name: "user-hour", Key: KeySASLUsername, Messages: 5, Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 Message rate limit exceeded, try again later"},
		{Name: "user-day", Key: KeySASLUsername, Messages: 100, Window: config.Duration(24 * time.Hour), Action: "REJECT 5.7.1 Daily limit exceeded"},
	}
	return cfg
}

// testSharedRateLimit runs two policyd instances on one store, as two MX hosts
// sharing Redis: alice's messages are spread over both, and the sixth message in
// the hour is deferred whichever instance sees it; carol is not affected.
func testSharedRateLimitStores(t *testing.T, sa, sb store.Store) {
	dir := testDir()
	dir.users["carol"] = dirUser("carol", "carol@example.com")
	a := startServer(t, sharedLimitConfig(), Deps{Store: sa, Directory: dir})
	b := startServer(t, sharedLimitConfig(), Deps{Store: sb, Directory: dir})
	ca, cb := a.dial(t), b.dial(t)
	msg := func(c *client, login, from string, n int) string {
		// One transaction: two RCPTs with the same instance count as one message.
		inst := fmt.Sprintf("%s.%d", login, n)
		first := c.ask("sasl_username", login, "sender", from, "instance", inst, "recipient", "x@remote.example")
		second := c.ask("sasl_username", login, "sender", from, "instance", inst, "recipient", "y@remote.example")
		if first != second {
			t.Fatalf("message %d: RCPT answers differ: %q vs %q", n, first, second)
		}
		return first
	}
	for n := 1; n <= 5; n++ {
		c := ca
		if n%2 == 0 {
			c = cb
		}
		if got := msg(c, "alice", "alice@example.com", n); got != "DUNNO" {
			t.Fatalf("alice message %d: %q", n, got)
		}
	}
	for _, c := range []*client{ca, cb} {
		if got := msg(c, "alice", "alice@example.com", 6); got != "DEFER 4.7.1 Message rate limit exceeded, try again later" {
			t.Fatalf("alice over the hourly limit: %q", got)
		}
	}
	if got := msg(cb, "carol", "carol@example.com", 1); got != "DUNNO" {
		t.Fatalf("carol: %q", got)
	}
	// Sender/login mismatch on the same path.
	if got := cb.ask("sasl_username", "carol", "sender", "alice@example.com"); !strings.HasPrefix(got, "553 5.7.1 Sender address not owned by user carol") {
		t.Fatalf("carol sending as alice: %q", got)
	}
	for _, s := range []*testServer{a, b} {
		if !strings.Contains(s.logs.String(), "rate limit user-hour for alice") {
			t.Errorf("instance log lacks the rate-limit decision:\n%s", s.logs.String())
		}
	}
}

func TestSharedRateLimitMem(t *testing.T) {
	st := mem.New()
	testSharedRateLimitStores(t, st, st)
}
