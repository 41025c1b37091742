package policyd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

func greyConfig() Config {
	c := testConfig()
	c.Greylist.Enabled = true
	c.Greylist.AutoWhitelistAfter = 2
	c.Greylist.AutoWhitelistInterval = config.Duration(time.Hour)
	return c
}

// batchedStore offers store.MultiGetter over a local store, so the greylist
// tests run the read-ahead path that Redis takes as well.
type batchedStore struct{ *mem.Store }

func (b batchedStore) GetMulti(ctx context.Context, keys ...string) ([][]byte, error) {
	return store.GetMulti(ctx, b.Store, keys...)
}

func TestGreylistLifecycle(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprint("batched=", batched), func(t *testing.T) { testGreylistLifecycle(t, batched) })
	}
}

func testGreylistLifecycle(t *testing.T, batched bool) {
	clk := newClock()
	m := mem.New()
	m.Now = clk.Now
	var st store.Store = m
	if batched {
		st = batchedStore{m}
	}
	cfg := greyConfig()
	cfg.Greylist.AutoWhitelistAfter = 3
	s := newDirect(t, cfg, Deps{Store: st, Now: clk.Now})
	to := func(rcpt string, more ...string) []string { return append([]string{"recipient", rcpt}, more...) }
	deferred := func(what string, d decision, wait string) {
		t.Helper()
		if d.action.Verb != VerbDeferIfPermit || !strings.Contains(d.action.Text, wait) || d.check != CheckGreylist {
			t.Fatalf("%s: %+v", what, d)
		}
	}

	deferred("new triplet", evalDirect(t, s, nil), "300 seconds")
	clk.Add(100 * time.Second)
	deferred("early retry", evalDirect(t, s, nil), "200 seconds")
	clk.Add(201 * time.Second)
	d := evalDirect(t, s, nil)
	if d.action.Verb != VerbPrepend || !strings.HasPrefix(d.action.Text, "X-Greylist: delayed 301 seconds by dovetail-policyd at mx.test;") {
		t.Fatalf("retry after delay: %+v", d)
	}
	if d = evalDirect(t, s, nil); !d.action.IsDunno() {
		t.Fatalf("known triplet: %+v", d)
	}
	// Two triplets of one message, first seen together.
	deferred("new triplet b", evalDirect(t, s, nil, to("b@example.com")...), "300 seconds")
	deferred("new triplet c", evalDirect(t, s, nil, to("c@example.com")...), "300 seconds")

	clk.Add(2 * time.Hour)
	// Later messages of a triplet that passed are not retries that got
	// through greylisting: they earn the client nothing (postgrey).
	for range 3 {
		if d = evalDirect(t, s, nil); !d.action.IsDunno() {
			t.Fatalf("known triplet later: %+v", d)
		}
		clk.Add(2 * time.Hour)
	}
	deferred("new triplet, one credit", evalDirect(t, s, nil, to("d@example.com")...), "300 seconds")
	// The retried message with both recipients: one X-Greylist header per
	// message, and the second credit for 192.0.2.10 (c's pass in the same
	// hour earns nothing more).
	cs := &connState{}
	if d = evalDirect(t, s, cs, to("b@example.com", "instance", "msg-2")...); d.action.Verb != VerbPrepend {
		t.Fatalf("retry of b: %+v", d)
	}
	if d = evalDirect(t, s, cs, to("c@example.com", "instance", "msg-2")...); !d.action.IsDunno() || !strings.Contains(d.reason, "passed after") {
		t.Fatalf("retry of c in the same message: %+v (want DUNNO without a second header)", d)
	}
	deferred("new triplet, two credits", evalDirect(t, s, nil, to("e@example.com")...), "300 seconds")
	clk.Add(2 * time.Hour)
	if d = evalDirect(t, s, nil, to("d@example.com")...); d.action.Verb != VerbPrepend {
		t.Fatalf("retry of d: %+v", d)
	}
	d = evalDirect(t, s, nil, to("e2@example.com")...)
	if !d.action.IsDunno() || !strings.Contains(d.reason, "client 192.0.2.10 auto-whitelisted") {
		t.Fatalf("auto-whitelisted client: %+v", d)
	}
	// The auto-whitelist is per address: a neighbour in the /24 is not on it;
	// but the neighbour's retry is the same triplet (postgrey's
	// --lookup-by-subnet).
	deferred("neighbour", evalDirect(t, s, nil, "client_address", "192.0.2.250", "recipient", "f@example.com"), "300 seconds")
	clk.Add(301 * time.Second)
	if d = evalDirect(t, s, nil, "client_address", "192.0.2.99", "recipient", "f@example.com"); d.action.Verb != VerbPrepend {
		t.Fatalf("another host of the /24 retrying: %+v", d)
	}

	// A whitelisted client that keeps sending stays whitelisted past max_age
	// (35 days): its entry is renewed when used (at most once an hour).
	for range 3 {
		clk.Add(20 * 24 * time.Hour)
		if d = evalDirect(t, s, nil, to("g@example.com")...); !strings.Contains(d.reason, "auto-whitelisted") {
			t.Fatalf("whitelisted client sending every 20 days: %+v", d)
		}
	}
	// One that stops sending for longer than max_age is forgotten.
	clk.Add(36 * 24 * time.Hour)
	deferred("after max_age of silence", evalDirect(t, s, nil, to("h@example.com")...), "300 seconds")
}

// TestGreylistDamagedEntries: a damaged auto-whitelist entry counts as none
// and a damaged triplet as new, so the client is greylisted as usual rather
// than answered a temporary failure on every request.
func TestGreylistDamagedEntries(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprint("batched=", batched), func(t *testing.T) { testGreylistDamagedEntries(t, batched) })
	}
}

func testGreylistDamagedEntries(t *testing.T, batched bool) {
	var st store.Store = mem.New()
	if batched {
		st = batchedStore{st.(*mem.Store)}
	}
	s := newDirect(t, greyConfig(), Deps{Store: st})
	ctx := t.Context()
	if err := st.Set(ctx, awlPrefix+"192.0.2.10", []byte("garbage"), time.Hour); err != nil {
		t.Fatal(err)
	}
	d := evalDirect(t, s, nil)
	if d.action.Verb != VerbDeferIfPermit || d.check != CheckGreylist || !strings.Contains(d.reason, "new triplet") {
		t.Fatalf("damaged AWL entry: %+v", d)
	}
	if err := st.Set(ctx, awlPrefix+"192.0.2.10", []byte("1 x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := evalDirect(t, s, nil); d.action.Verb != VerbDeferIfPermit || d.check != CheckGreylist {
		t.Fatalf("damaged AWL entry, known triplet: %+v", d)
	}
}

func TestGreylistRetryWindowAndMaxAge(t *testing.T) {
	clk := newClock()
	st := mem.New()
	st.Now = clk.Now
	cfg := greyConfig()
	cfg.Greylist.AutoWhitelistAfter = 0
	s := newDirect(t, cfg, Deps{Store: st, Now: clk.Now})
	evalDirect(t, s, nil)
	clk.Add(49 * time.Hour) // beyond the 48h retry window: the entry expired
	if d := evalDirect(t, s, nil); d.action.Verb != VerbDeferIfPermit || !strings.Contains(d.action.Text, "300 seconds") {
		t.Fatalf("retry after the window must start over: %+v", d)
	}
	clk.Add(301 * time.Second)
	if d := evalDirect(t, s, nil); d.action.Verb != VerbPrepend {
		t.Fatalf("pass: %+v", d)
	}
	clk.Add(34 * 24 * time.Hour)
	if d := evalDirect(t, s, nil); !d.action.IsDunno() {
		t.Fatalf("within max age: %+v", d)
	}
	clk.Add(36 * 24 * time.Hour)
	if d := evalDirect(t, s, nil); d.action.Verb != VerbDeferIfPermit {
		t.Fatalf("after max age the triplet is forgotten: %+v", d)
	}
}

func TestGreylistExemptions(t *testing.T) {
	dir := t.TempDir()
	clients := filepath.Join(dir, "clients")
	os.WriteFile(clients, []byte("# comment\ndebian.org\n/^mail\\d+\\.telekom\\.de$/\n66.216.126.174\n10.20\n"), 0o644)
	rcpts := filepath.Join(dir, "rcpts")
	os.WriteFile(rcpts, []byte("postmaster@\nvip@example.com\nlists.example.net\n"), 0o644)
	cfg := greyConfig()
	cfg.Greylist.ExemptClientsFile = clients
	cfg.Greylist.ExemptRecipientsFile = rcpts
	cfg.Greylist.ExemptNetworks = []string{"198.51.100.0/24"}
	s := newDirect(t, cfg, Deps{Store: mem.New()})
	tests := []struct {
		name  string
		attrs []string
	}{
		{"authenticated", []string{"sasl_username", "alice"}},
		{"network", []string{"client_address", "198.51.100.7"}},
		{"client domain", []string{"client_name", "mx3.debian.org"}},
		{"client regex", []string{"client_name", "mail12.telekom.de"}},
		{"client ip from file", []string{"client_address", "66.216.126.174"}},
		{"partial prefix", []string{"client_address", "10.20.1.2"}},
		{"recipient local part", []string{"recipient", "Postmaster@anything.example"}},
		{"recipient address", []string{"recipient", "vip@example.com"}},
		{"recipient domain", []string{"recipient", "x@lists.example.net"}},
		{"recipient address with a trailing dot", []string{"recipient", "vip@example.com."}},
		{"recipient domain with a trailing dot", []string{"recipient", "x@Lists.Example.net."}},
		{"not at RCPT", []string{"protocol_state", "MAIL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := evalDirect(t, s, nil, tc.attrs...); !d.action.IsDunno() {
				t.Fatalf("%v: %+v", tc.attrs, d)
			}
		})
	}
	if d := evalDirect(t, s, nil, "client_name", "notdebian.org"); d.action.Verb != VerbDeferIfPermit {
		t.Fatalf("suffix must match at a label boundary: %+v", d)
	}
}

// TestGreylistRecipientExemptionsAsPostgrey: postgrey's whitelist_recipients
// (the files policyd is told to read when migrating) follow access(5): a
// "user@domain" or "user@" entry also matches user+extension, and a domain
// entry also matches its subdomains. Before, only the exact address or
// domain was exempt, so mail for them was greylisted after the switch.
func TestGreylistRecipientExemptionsAsPostgrey(t *testing.T) {
	rcpts := filepath.Join(t.TempDir(), "rcpts")
	os.WriteFile(rcpts, []byte("postmaster@\nvip@example.com\nlists.example.net\n"), 0o644)
	cfg := greyConfig()
	cfg.Greylist.ExemptRecipientsFile = rcpts
	cfg.Greylist.ExemptRecipients = []string{"Partner.Example"}
	s := newDirect(t, cfg, Deps{Store: mem.New()})
	for _, rcpt := range []string{
		"postmaster+dmarc@anything.example",
		"VIP+orders@example.com",
		"x@sub.lists.example.net",
		"x@a.b.lists.example.net.",
		"x@mx.partner.example",
	} {
		if d := evalDirect(t, s, nil, "recipient", rcpt); !d.action.IsDunno() {
			t.Errorf("%s: %+v", rcpt, d)
		}
	}
	for _, rcpt := range []string{
		"vipx@example.com",       // another user
		"vip@sub.example.com",    // an address entry is not a domain
		"x@notlists.example.net", // suffix, not a subdomain
		"postmasterx@anything.example",
		"+vip@example.com", // no user before the delimiter
	} {
		if d := evalDirect(t, s, nil, "recipient", rcpt); d.action.Verb != VerbDeferIfPermit {
			t.Errorf("%s must be greylisted: %+v", rcpt, d)
		}
	}
}

func TestNormalizeSender(t *testing.T) {
	tests := map[string]string{
		"":                                 "",
		"News@Example.COM":                 "news@example.com",
		"user+tag@example.com":             "user@example.com",
		"bounce-12345@lists.example":       "bounce-#@lists.example",
		"news123@example.com":              "news123@example.com",
		"prvs=1234567890=user@example.com": "user@example.com",
		// The tag after the user, as some senders write it (postgrey reads both).
		"prvs=user=1234567890@example.com":                    "user@example.com",
		"prvs=user=0123abcdef@example.com":                    "user@example.com",
		"prvs=0123abcdef=user@example.com":                    "user@example.com",
		"SRS0=HHH=TT=orig.example=joe@fwd.example":            "joe@orig.example",
		"SRS1=HHH=fwd1.example==HHH=TT=orig.example=joe@fwd2": "joe@orig.example",
		"a.1.b@x": "a.#.b@x",
	}
	for in, want := range tests {
		if got := normalizeSender(in, "+"); got != want {
			t.Errorf("normalizeSender(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientNet(t *testing.T) {
	tests := map[string]string{
		"192.0.2.77":          "192.0.2.0/24",
		"::ffff:192.0.2.77":   "192.0.2.0/24",
		"2001:db8:1:2::5":     "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::": "2001:db8:1:2::/64",
	}
	for in, want := range tests {
		var r Request
		if err := r.set("client_address", in); err != nil {
			t.Fatal(err)
		}
		if got := clientNet(&r, 24, 64); got != want {
			t.Errorf("clientNet(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestKeysMatchReference checks the buffer-built store keys against the
// straightforward string versions they replaced: the keys in a store written
// by an older version must be found again.
func TestKeysMatchReference(t *testing.T) {
	long := strings.Repeat("x", 300)
	senders := []string{"", "News@Example.COM", "user+tag@example.com", "bounce-12345@lists.example", "prvs=1234567890=user@example.com",
		"SRS1=HHH=fwd1.example==HHH=TT=orig.example=joe@fwd2", "a.1.b@x", "no-at-sign", "Ünïcode@Bücher.example", "\u212a@example.com",
		long + "@example.com", "MiXeD123@" + long}
	rcpts := []string{"", "user@example.com", "User@EXAMPLE.com", "ÄBC@example.com", long + "@example.com"}
	for _, in := range []string{"192.0.2.77", "2001:db8:1:2::5", "::ffff:192.0.2.77"} {
		var r Request
		if err := r.set("client_address", in); err != nil {
			t.Fatal(err)
		}
		net := clientNet(&r, 24, 64)
		if p, _ := r.ClientAddr.Prefix(map[bool]int{true: 24, false: 64}[r.ClientAddr.Is4()]); net != p.String() {
			t.Errorf("clientNet(%s) = %q, want %q", in, net, p.String())
		}
		for _, s := range senders {
			for _, rc := range rcpts {
				want := tripletKey(net, normalizeSender(s, "+-"), strings.ToLower(rc))
				if got := requestTripletKey(net, s, rc, "+-"); got != want {
					t.Errorf("requestTripletKey(%q, %q, %q) = %q, want %q", net, s, rc, got, want)
				}
			}
		}
	}
	refRateKey := func(r *Request, key string) string {
		var v string
		switch key {
		case KeySASLUsername:
			v = strings.ToLower(r.SASLUsername)
		case KeySender:
			v = strings.ToLower(stripDetail(r.Sender, "+"))
		case KeyClientAddress:
			if r.ClientAddr.IsValid() {
				v = r.ClientAddr.String()
			}
		}
		if len(v) > 200 {
			sum := sha256.Sum256([]byte(v))
			v = "#" + hex.EncodeToString(sum[:16])
		}
		return v
	}
	for _, s := range senders {
		for _, addr := range []string{"", "unknown", "192.0.2.1", "2001:db8::1", "fe80::1%eth0"} {
			var r Request
			_ = r.set("client_address", addr)
			r.Sender, r.SASLUsername = s, s
			for _, key := range []string{KeySASLUsername, KeySender, KeyClientAddress} {
				if got, want := string(appendRateKeyValue([]byte("rate:x:"), &r, key, "+", 32, 128)), "rate:x:"+refRateKey(&r, key); got != want {
					t.Errorf("rate key %s for %q/%q = %q, want %q", key, s, addr, got, want)
				}
			}
		}
	}
}

// A clock stepped back (a host that ran ahead until NTP corrected it) leaves
// triplets first seen "in the future". Their retries must start over with the
// usual delay, not wait until the clock catches up with the bad time (up to
// the retry window, with a reply asking for a wait of a day).
func TestGreylistClockSteppedBack(t *testing.T) {
	clk := newClock()
	st := mem.New()
	st.Now = clk.Now
	cfg := greyConfig()
	s := newDirect(t, cfg, Deps{Store: st, Now: clk.Now})
	if d := evalDirect(t, s, nil); d.action.Verb != VerbDeferIfPermit || !strings.Contains(d.action.Text, "300 seconds") {
		t.Fatalf("new triplet: %+v", d)
	}
	clk.Add(-24 * time.Hour) // the clock is corrected a day back
	clk.Add(10 * time.Minute)
	if d := evalDirect(t, s, nil); d.action.Verb != VerbDeferIfPermit || !strings.Contains(d.action.Text, "300 seconds") {
		t.Fatalf("retry after the clock went back must start over: %+v", d)
	}
	clk.Add(301 * time.Second)
	if d := evalDirect(t, s, nil); d.action.Verb != VerbPrepend {
		t.Fatalf("retry after the delay must pass: %+v", d)
	}
}
