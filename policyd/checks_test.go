package policyd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/dnsbl"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store/mem"
)

func rateConfig(limits ...RateLimit) Config {
	c := testConfig()
	c.RateLimit.Enabled = true
	c.RateLimit.Limits = limits
	return c
}

// dnsblConfig is cfg with the DNSBL check on zones, lookups uncached.
func dnsblConfig(cfg Config, zones ...dnsbl.Zone) Config {
	cfg.DNSBL.Enabled = true
	cfg.DNSBL.Lists.CacheTTL = 0
	cfg.DNSBL.Lists.Zones = zones
	return cfg
}

func TestRateLimitPerUser(t *testing.T) {
	clk := newClock()
	s := newDirect(t, rateConfig(
		RateLimit{Name: "hour", Key: KeySASLUsername, Messages: 3, Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 slow down"},
		RateLimit{Name: "rcpt", Key: KeySASLUsername, Recipients: 5, Window: config.Duration(time.Hour), Action: "HOLD over recipient quota"},
	), Deps{Store: mem.New(), Now: clk.Now})
	cs := &connState{}
	// Message 1 with 3 recipients on one connection: counted once as a message.
	for i := 0; i < 3; i++ {
		if d := evalDirect(t, s, cs, "sasl_username", "alice", "instance", "m1", "recipient", fmt.Sprintf("r%d@x", i)); !d.action.IsDunno() {
			t.Fatalf("m1 rcpt %d: %+v", i, d)
		}
	}
	// Messages 2 and 3 with one recipient each: 5 recipients, 3 messages: at the limits.
	for _, inst := range []string{"m2", "m3"} {
		if d := evalDirect(t, s, cs, "sasl_username", "alice", "instance", inst); !d.action.IsDunno() {
			t.Fatalf("%s: %+v", inst, d)
		}
	}
	d := evalDirect(t, s, cs, "sasl_username", "Alice", "instance", "m4")
	if d.action.String() != "DEFER 4.7.1 slow down" || d.check != CheckRateLimit || !strings.Contains(d.reason, "4 messages") {
		t.Fatalf("4th message: %+v", d)
	}
	// Another user is not affected.
	if d := evalDirect(t, s, &connState{}, "sasl_username", "carol", "instance", "c1"); !d.action.IsDunno() {
		t.Fatalf("other user: %+v", d)
	}
	// Unauthenticated mail is not limited by a sasl_username limit.
	if d := evalDirect(t, s, &connState{}); !d.action.IsDunno() {
		t.Fatalf("anonymous: %+v", d)
	}
	// The window slides: an hour later alice may send again.
	clk.Add(61 * time.Minute)
	if d := evalDirect(t, s, &connState{}, "sasl_username", "alice", "instance", "m5"); !d.action.IsDunno() {
		t.Fatalf("after the window: %+v", d)
	}
}

// TestRateLimitSenderDetailAndAllWindows: a per-sender limit cannot be
// escaped by varying +tags, and every limit counts an attempt another limit
// refused (a daily limit sees the hammering an hourly one stops).
func TestRateLimitSenderDetailAndAllWindows(t *testing.T) {
	st := mem.New()
	cfg := rateConfig(
		RateLimit{Name: "hour", Key: KeySender, Messages: 2, Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 hourly"},
		RateLimit{Name: "day", Key: KeySender, Messages: 5, Window: config.Duration(24 * time.Hour), Action: "DEFER 4.7.1 daily"},
	)
	s := newDirect(t, cfg, Deps{Store: st})
	for i := range 10 {
		d := evalDirect(t, s, nil, "sender", fmt.Sprintf("Alice+%d@example.com", i), "instance", fmt.Sprint("m", i))
		if want := i < 2; d.action.IsDunno() != want {
			t.Fatalf("message %d: %+v", i+1, d)
		}
		if i >= 2 && d.action.Text != "4.7.1 hourly" {
			t.Fatalf("message %d: %+v (want the first limit exceeded to decide)", i+1, d)
		}
	}
	for _, l := range []string{"hour", "day"} {
		n, err := st.WindowAdd(t.Context(), "rate:"+l+":alice@example.com:m", time.Now(), time.Hour, 0)
		if err != nil || n != 10 {
			t.Errorf("%s window counted %d attempts (%v), want 10", l, n, err)
		}
	}
}

// TestRateLimitSenderTrailingDot: "alice@example.com." is the sender
// alice@example.com to Postfix (trivial-rewrite drops the dot), so it counts
// against the same per-sender limit.
func TestRateLimitSenderTrailingDot(t *testing.T) {
	s := newDirect(t, rateConfig(
		RateLimit{Name: "hour", Key: KeySender, Messages: 2, Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 hourly"},
	), Deps{Store: mem.New()})
	for i, sender := range []string{"alice@example.com", "alice@example.com.", "Alice@Example.COM."} {
		d := evalDirect(t, s, nil, "sender", sender, "instance", fmt.Sprint("m", i))
		if want := i < 2; d.action.IsDunno() != want {
			t.Fatalf("message %d from %s: %+v", i+1, sender, d)
		}
	}
}

func TestRateLimitRecipientsHold(t *testing.T) {
	s := newDirect(t, rateConfig(
		RateLimit{Name: "ip", Key: KeyClientAddress, Recipients: 2, Window: config.Duration(time.Minute), Action: "HOLD held for review"},
	), Deps{Store: mem.New()})
	cs := &connState{}
	evalDirect(t, s, cs)
	evalDirect(t, s, cs)
	if d := evalDirect(t, s, cs); d.action.String() != "HOLD held for review" {
		t.Fatalf("3rd recipient: %+v", d)
	}
}

// TestRateLimitClientNetworks: an IPv6 client rotating its source address
// within its /64 is one client to a client_address limit; IPv4 counts by host
// unless ipv4_prefix says otherwise. The reply names the network counted.
func TestRateLimitClientNetworks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v4, v6 int
		addrs  []string // the third is refused when all share one count
		shared bool
	}{
		{"IPv6 rotation within a /64", 32, 64, []string{"2001:db8:1:2::1", "2001:db8:1:2::abcd", "2001:db8:1:2:ffff::9"}, true},
		{"IPv6 neighbours in other /64s", 32, 64, []string{"2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:4::1"}, false},
		{"IPv6 by host", 32, 128, []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3"}, false},
		{"IPv4 by host", 32, 64, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, false},
		{"IPv4 by /24", 24, 64, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := rateConfig(RateLimit{Name: "ip", Key: KeyClientAddress, Recipients: 2, Window: config.Duration(time.Minute), Action: "DEFER 4.7.1 too fast from {key}"})
			cfg.RateLimit.IPv4Prefix, cfg.RateLimit.IPv6Prefix = tc.v4, tc.v6
			s := newDirect(t, cfg, Deps{Store: mem.New()})
			var d decision
			for _, a := range tc.addrs {
				d = evalDirect(t, s, &connState{}, "client_address", a)
			}
			if refused := !d.action.IsDunno(); refused != tc.shared {
				t.Fatalf("third request from %s: %+v (want refused: %v)", tc.addrs[2], d, tc.shared)
			}
			if tc.shared && tc.name == "IPv6 rotation within a /64" && d.action.Text != "4.7.1 too fast from 2001:db8:1:2::/64" {
				t.Fatalf("reply %q should name the network counted", d.action.Text)
			}
		})
	}
	cfg := DefaultConfig().RateLimit
	for _, bad := range []struct{ v4, v6 int }{{7, 64}, {33, 64}, {32, 15}, {32, 129}} {
		c := cfg
		c.IPv4Prefix, c.IPv6Prefix = bad.v4, bad.v6
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("ipv4_prefix %d / ipv6_prefix %d accepted: %v", bad.v4, bad.v6, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

func TestSenderLoginAndRecipients(t *testing.T) {
	cfg := testConfig()
	cfg.SenderLogin.Enabled = true
	cfg.Recipients.Enabled = true
	cfg.Recipients.LocalDomains = []string{"example.com"}
	dir := testDir()
	s := newDirect(t, cfg, Deps{Store: mem.New(), Directory: dir})
	tests := []struct {
		name  string
		attrs []string
		want  string // action prefix
	}{
		{"own address", []string{"sasl_username", "alice", "sender", "alice@example.com"}, "DUNNO"},
		{"own address with detail and case", []string{"sasl_username", "alice", "sender", "Alice+lists@Example.com"}, "DUNNO"},
		{"alias", []string{"sasl_username", "alice", "sender", "postmaster@example.com"}, "DUNNO"},
		{"someone else's address", []string{"sasl_username", "alice", "sender", "bob@example.com"}, "553 5.7.1"},
		{"unknown login", []string{"sasl_username", "mallory", "sender", "alice@example.com"}, "553 5.7.1"},
		// A directory returns a disabled user with Enabled=false: an account
		// disabled while its SMTP session is still open owns nothing.
		{"disabled login", []string{"sasl_username", "bob", "sender", "bob@example.com"}, "553 5.7.1"},
		// Postfix looks the full sender up first; owned addresses are not stripped.
		{"owning a +detail address is not owning its base", []string{"sasl_username", "carol", "sender", "team@example.com"}, "553 5.7.1"},
		{"an owned +detail address", []string{"sasl_username", "carol", "sender", "Team+Support@example.com"}, "DUNNO"},
		{"someone else's +detail address of an owned base", []string{"sasl_username", "dave", "sender", "team+support@example.com"}, "553 5.7.1"},
		{"a free +detail of an owned base", []string{"sasl_username", "dave", "sender", "team+other@example.com"}, "DUNNO"},
		{"null sender", []string{"sasl_username", "alice", "sender", ""}, "DUNNO"},
		{"at MAIL", []string{"protocol_state", "MAIL", "sasl_username", "alice", "sender", "bob@example.com", "recipient", ""}, "553 5.7.1"},
		{"unauthenticated", []string{"sender", "bob@example.com"}, "DUNNO"},
		{"unknown recipient", []string{"recipient", "nobody@example.com"}, "550 5.1.1"},
		{"disabled recipient", []string{"recipient", "bob@example.com"}, "550 5.2.1"},
		{"known recipient with detail", []string{"recipient", "alice+x@EXAMPLE.com"}, "DUNNO"},
		{"recipient that contains the delimiter", []string{"recipient", "sales+eu@example.com"}, "DUNNO"},
		{"remote recipient", []string{"recipient", "nobody@elsewhere.example"}, "DUNNO"},
		// Postfix resolves "user@example.com." as user@example.com (a local
		// domain: accepted, then delivered or bounced as such), so the
		// trailing dot must not take a recipient past the check.
		{"unknown recipient with a trailing dot", []string{"recipient", "nobody@example.com."}, "550 5.1.1"},
		{"known recipient with a trailing dot", []string{"recipient", "Alice@Example.com."}, "DUNNO"},
		{"own address with a trailing dot", []string{"sasl_username", "alice", "sender", "alice@example.com."}, "DUNNO"},
		{"someone else's address with a trailing dot", []string{"sasl_username", "alice", "sender", "bob@example.com."}, "553 5.7.1"},
		{"a bogus domain stays remote", []string{"recipient", "nobody@example.com.."}, "DUNNO"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			attrs := append([]string{"recipient", "alice@example.com"}, tc.attrs...)
			if d := evalDirect(t, s, nil, attrs...); !strings.HasPrefix(d.action.String(), tc.want) {
				t.Fatalf("got %+v, want %s", d, tc.want)
			}
		})
	}
	// Directory down: temporary, never a rejection.
	dir.err = fmt.Errorf("ldap: %w", directory.ErrUnavailable)
	d := evalDirect(t, s, nil, "recipient", "nobody@example.com")
	if d.action.Verb != VerbDeferIfPermit || d.action.Permanent() || d.err == nil {
		t.Fatalf("directory down: %+v", d)
	}
}

func TestStoreFailureModes(t *testing.T) {
	for _, mode := range []string{FailOpen, FailClosed} {
		t.Run(mode, func(t *testing.T) {
			st := mem.New()
			st.Down = true
			cfg := greyConfig()
			cfg.StoreFailure = mode
			s := newDirect(t, cfg, Deps{Store: st})
			d := evalDirect(t, s, nil)
			switch mode {
			case FailOpen:
				if !d.action.IsDunno() || len(d.notes) != 1 {
					t.Fatalf("fail open: %+v", d)
				}
			case FailClosed:
				if d.action.Verb != VerbDeferIfPermit || d.err == nil {
					t.Fatalf("fail closed: %+v", d)
				}
			}
		})
	}
}

type panicCheck struct{}

func (panicCheck) name() string { return "panic" }
func (panicCheck) eval(context.Context, *txn) (verdict, error) {
	panic("boom")
}

func TestPanicIsTemporary(t *testing.T) {
	s := newDirect(t, testConfig(), Deps{Store: mem.New()})
	e := s.eng.Load()
	e.setChecks([]check{panicCheck{}})
	if d := evalDirect(t, s, nil); d.action.Verb != VerbDeferIfPermit || d.err == nil {
		t.Fatalf("panic: %+v", d)
	}
}

func TestSPF(t *testing.T) {
	res := &mockdns.Resolver{Zones: map[string]mockdns.Zone{
		"strict.example.":  {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}},
		"soft.example.":    {TXT: []string{"v=spf1 ip4:192.0.2.0/24 ~all"}},
		"broken.example.":  {TXT: []string{"v=spf1 ip4:999.1.1.1 -all"}},
		"dnsfail.example.": {Err: &net.DNSError{Err: "server failure", Name: "dnsfail.example", IsTemporary: true}},
	}}
	cfg := testConfig()
	cfg.SPF.Enabled = true
	cfg.SPF.ExemptNetworks = []string{"203.0.113.0/24"} // a forwarder
	s := newDirect(t, cfg, Deps{Store: mem.New(), Resolver: res})
	tests := []struct {
		name  string
		attrs []string
		want  string
	}{
		{"pass", []string{"sender", "a@strict.example", "client_address", "192.0.2.9"}, "DUNNO"},
		{"fail", []string{"sender", "a@strict.example", "client_address", "198.51.100.9"}, "550 5.7.23 SPF validation failed for a@strict.example from [198.51.100.9]"},
		{"softfail", []string{"sender", "a@soft.example", "client_address", "198.51.100.9"}, "DUNNO"},
		{"permerror", []string{"sender", "a@broken.example", "client_address", "198.51.100.9"}, "DUNNO"},
		{"temperror", []string{"sender", "a@dnsfail.example", "client_address", "198.51.100.9"}, "DEFER_IF_PERMIT 4.7.24"},
		{"null sender uses helo", []string{"sender", "", "helo_name", "strict.example", "client_address", "198.51.100.9"}, "550 5.7.23"},
		{"forwarder exempt", []string{"sender", "a@strict.example", "client_address", "203.0.113.5"}, "DUNNO"},
		{"authenticated exempt", []string{"sender", "a@strict.example", "client_address", "198.51.100.9", "sasl_username", "a"}, "DUNNO"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := evalDirect(t, s, nil, tc.attrs...); !strings.HasPrefix(d.action.String(), tc.want) {
				t.Fatalf("got %+v, want %s", d, tc.want)
			}
		})
	}
}

func TestGreylistSPFPassExempt(t *testing.T) {
	res := &mockdns.Resolver{Zones: map[string]mockdns.Zone{"strict.example.": {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}}}}
	cfg := greyConfig()
	cfg.Greylist.ExemptSPFPass = true
	s := newDirect(t, cfg, Deps{Store: mem.New(), Resolver: res})
	if d := evalDirect(t, s, nil, "sender", "a@strict.example"); !d.action.IsDunno() || !strings.Contains(d.reason, "spf pass") {
		t.Fatalf("spf pass: %+v", d)
	}
	if d := evalDirect(t, s, nil, "sender", "a@other.example"); d.action.Verb != VerbDeferIfPermit {
		t.Fatalf("no spf: %+v", d)
	}
}

func TestDNSBL(t *testing.T) {
	res := &mockdns.Resolver{Zones: map[string]mockdns.Zone{
		"9.100.51.198.strong.example.": {A: []string{"127.0.0.2"}},
		"8.100.51.198.weak1.example.":  {A: []string{"127.0.0.2"}},
		"8.100.51.198.weak2.example.":  {A: []string{"127.0.0.2"}},
		"7.100.51.198.weak1.example.":  {A: []string{"127.0.0.2"}},
		"7.100.51.198.allow.example.":  {A: []string{"127.0.0.2"}},
		"7.100.51.198.weak2.example.":  {A: []string{"127.0.0.2"}},
		// zen-style return codes: 127.0.0.4 (XBL) blocks, 127.0.0.10 (PBL) does not.
		"5.100.51.198.zen.example.": {A: []string{"127.0.0.4"}},
		"4.100.51.198.zen.example.": {A: []string{"127.0.0.10", "127.0.0.11"}},
	}}
	cfg := dnsblConfig(testConfig(),
		dnsbl.Zone{Zone: "strong.example", Kind: dnsbl.KindIP, Symbol: "STRONG", Score: 2},
		dnsbl.Zone{Zone: "weak1.example", Kind: dnsbl.KindIP, Symbol: "WEAK1", Score: 1},
		dnsbl.Zone{Zone: "weak2.example", Kind: dnsbl.KindIP, Symbol: "WEAK2", Score: 1},
		dnsbl.Zone{Zone: "allow.example", Kind: dnsbl.KindIP, Symbol: "ALLOW", Score: -2},
		dnsbl.Zone{Zone: "zen.example", Kind: dnsbl.KindIP, Returns: []dnsbl.Return{
			{Code: "127.0.0.4", Symbol: "ZEN_XBL", Score: 2},
			{Code: "127.0.0.10", Symbol: "ZEN_PBL", Score: 0.5},
			{Code: "127.0.0.11", Symbol: "ZEN_PBL", Score: 0.5},
		}},
	)
	cfg.DNSBL.Threshold = 2
	s := newDirect(t, cfg, Deps{Store: mem.New(), Resolver: res})
	tests := map[string]string{
		"198.51.100.9": "554 5.7.1 Service unavailable; client [198.51.100.9] blocked using strong.example",
		"198.51.100.8": "554 5.7.1 Service unavailable; client [198.51.100.8] blocked using weak1.example, weak2.example",
		"198.51.100.7": "DUNNO", // two weak listings offset by the allowlist
		"198.51.100.6": "DUNNO",
		"198.51.100.5": "554 5.7.1 Service unavailable; client [198.51.100.5] blocked using zen.example", // return code 127.0.0.4
		"198.51.100.4": "DUNNO",                                                                          // PBL codes only: 0.5 < 2
	}
	for ip, want := range tests {
		if d := evalDirect(t, s, nil, "client_address", ip); d.action.String() != want {
			t.Errorf("%s: got %+v, want %s", ip, d, want)
		}
	}
}

// TestDNSBLFractionalWeightsAreStable: the same client on the same lists
// gets the same answer every time (the sum does not depend on map order), and
// weights adding up to the threshold reach it.
func TestDNSBLFractionalWeightsAreStable(t *testing.T) {
	res := &mockdns.Resolver{Zones: map[string]mockdns.Zone{
		"9.100.51.198.a.example.": {A: []string{"127.0.0.2"}},
		"9.100.51.198.b.example.": {A: []string{"127.0.0.2"}},
		"9.100.51.198.c.example.": {A: []string{"127.0.0.2"}},
	}}
	cfg := dnsblConfig(testConfig(),
		dnsbl.Zone{Zone: "a.example", Kind: dnsbl.KindIP, Symbol: "A", Score: 0.1},
		dnsbl.Zone{Zone: "b.example", Kind: dnsbl.KindIP, Symbol: "B", Score: 0.2},
		dnsbl.Zone{Zone: "c.example", Kind: dnsbl.KindIP, Symbol: "C", Score: 0.7},
	)
	cfg.DNSBL.Threshold = 1
	s := newDirect(t, cfg, Deps{Store: mem.New(), Resolver: res})
	for i := range 100 {
		if d := evalDirect(t, s, nil, "client_address", "198.51.100.9"); d.action.Verb != VerbReject && !d.action.Permanent() {
			t.Fatalf("run %d: %+v (0.1 + 0.2 + 0.7 must reach the threshold 1)", i, d)
		}
	}
}

// TestDNSBLFailureLoggedWhateverDecides: lookups that failed are in the
// decision line even when a later check (greylisting) decides.
func TestDNSBLFailureLoggedWhateverDecides(t *testing.T) {
	res := &mockdns.Resolver{Zones: map[string]mockdns.Zone{
		"9.100.51.198.broken.example.": {Err: errors.New("server failure")},
	}}
	cfg := dnsblConfig(greyConfig(), dnsbl.Zone{Zone: "broken.example", Kind: dnsbl.KindIP, Symbol: "X", Score: 1})
	s := newDirect(t, cfg, Deps{Store: mem.New(), Resolver: res})
	d := evalDirect(t, s, nil, "client_address", "198.51.100.9")
	if d.check != CheckGreylist || len(d.warns) != 1 || !strings.HasPrefix(d.warns[0], "dnsbl: 1 lookups failed") {
		t.Fatalf("decision %+v: want greylisting deciding and the DNSBL failure in warns", d)
	}
}

// TestRequestDeadlineIsNotAStoreFailure: a store call that fails because the
// request's own deadline passed (slow DNS before it) answers a temporary
// failure even with store_failure: open; failing open would skip greylisting.
func TestRequestDeadlineIsNotAStoreFailure(t *testing.T) {
	cfg := greyConfig()
	cfg.StoreFailure = FailOpen
	s := newDirect(t, cfg, Deps{Store: mem.New()})
	e := s.eng.Load()
	e.setChecks(append([]check{slowCheck{}}, e.checks...))
	rd := NewReader(strings.NewReader(encodeRequest()), 0, 0)
	var r Request
	if err := rd.Read(&r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	d := e.decide(ctx, &txn{req: &r, conn: &connState{}, now: time.Now()})
	if d.action.Verb != VerbDeferIfPermit || len(d.notes) != 0 {
		t.Fatalf("decision %+v: want a temporary failure, not a fail-open pass", d)
	}
}

// slowCheck uses up the request's time, like DNS that does not answer.
type slowCheck struct{}

func (slowCheck) name() string { return "slow" }
func (slowCheck) eval(ctx context.Context, _ *txn) (verdict, error) {
	<-ctx.Done()
	return pass, nil
}

// writeMMDB builds a small GeoLite2-Country-style database.
func writeMMDB(t *testing.T, entries map[string]string) string {
	t.Helper()
	return writeMMDBVersion(t, entries, 6)
}

func writeMMDBVersion(t *testing.T, entries map[string]string, ipVersion int) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24, IncludeReservedNetworks: true, IPVersion: ipVersion})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, cc := range entries {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(cc)}}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "country.mmdb")
	f, err := createFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAccessNetworksAndCountries(t *testing.T) {
	db := writeMMDB(t, map[string]string{"203.0.113.0/24": "RU", "198.51.100.0/24": "DE", "2001:db8::/32": "RU"})
	cfg := testConfig()
	cfg.Greylist.Enabled = true
	cfg.Access.Enabled = true
	cfg.Access.AllowNetworks = []string{"203.0.113.5"}
	cfg.Access.DenyNetworks = []string{"192.0.2.128/25"}
	cfg.Access.GeoIPDatabase = db
	cfg.Access.DenyCountries = []string{"RU"}
	cfg.Access.DenyAction = "REJECT 5.7.1 Access denied for {client}"
	s := newDirect(t, cfg, Deps{Store: mem.New()})
	tests := map[string]string{
		"203.0.113.5":  "DUNNO", // allowed network: stops before greylisting
		"203.0.113.6":  "REJECT 5.7.1 Access denied for 203.0.113.6",
		"2001:db8::1":  "REJECT 5.7.1 Access denied for 2001:db8::1",
		"192.0.2.200":  "REJECT 5.7.1 Access denied for 192.0.2.200",
		"198.51.100.1": "DEFER_IF_PERMIT", // Germany: allowed, greylisted
		"100.64.0.1":   "DEFER_IF_PERMIT", // unknown location: allowed
	}
	for ip, want := range tests {
		if d := evalDirect(t, s, nil, "client_address", ip); !strings.HasPrefix(d.action.String(), want) {
			t.Errorf("%s: got %+v, want %s", ip, d, want)
		}
	}
	// Reload with a new database: Germany denied now, without a new Server.
	cfg.Access.GeoIPDatabase = writeMMDB(t, map[string]string{"198.51.100.0/24": "RU"})
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if d := evalDirect(t, s, nil, "client_address", "198.51.100.1"); d.action.Verb != VerbReject {
		t.Fatalf("after reload: %+v", d)
	}
	// A broken reload keeps the running configuration.
	cfg.Access.GeoIPDatabase = filepath.Join(t.TempDir(), "missing.mmdb")
	if err := s.Reload(cfg); err == nil {
		t.Fatal("reload with a missing database succeeded")
	}
	if d := evalDirect(t, s, nil, "client_address", "198.51.100.1"); d.action.Verb != VerbReject {
		t.Fatalf("after failed reload: %+v", d)
	}
	// An IPv4-only database: IPv6 clients are of unknown location (allowed),
	// not a lookup error that defers all their mail.
	cfg.Access.GeoIPDatabase = writeMMDBVersion(t, map[string]string{"203.0.113.0/24": "RU"}, 4)
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if d := evalDirect(t, s, nil, "client_address", "2001:db8::1"); d.check != CheckGreylist || d.err != nil {
		t.Fatalf("IPv6 client, IPv4-only database: %+v (want greylisting, no error)", d)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.Checks = []string{"greylist", "bogus", "greylist"}
	c.StoreFailure = "maybe"
	c.Greylist.Action = "MAYBE later"
	c.RateLimit.Limits = append(c.RateLimit.Limits, RateLimit{Name: "x", Key: "helo", Window: 0, Action: "DUNNO"})
	c.Access.DenyCountries = []string{"ru"}
	c.SPF.Enabled, c.DNSBL.Enabled = true, true
	c.RequestTimeout = config.Duration(12 * time.Second) // spf 10s + dnsbl 5s leave nothing for greylisting
	err := config.Validate("policyd", &c)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"unknown check \"bogus\"", "listed twice", "store_failure", "greylist.action", "unknown key \"helo\"", "at least 1s", "ISO 3166", "geoip_database", "request_timeout: must exceed spf.timeout + dnsbl.lists.budget (15s)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if err := config.Validate("policyd", ptr(DefaultConfig())); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if _, err := New(c, Deps{}); err == nil || !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("New with invalid config: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestRefusalActionsRefuse: greylisting must defer (or reject) and a rate
// limit defer, reject or hold, as the validation says. OK, DISCARD, BCC,
// FILTER or REDIRECT end the checks too but let the mail through: a
// greylist action OK permitted every new triplet and skipped the Postfix
// restrictions after the policy service (reject on a submission port).
func TestRefusalActionsRefuse(t *testing.T) {
	for _, a := range []string{"OK", "DISCARD", "BCC audit@example.org", "FILTER smtp:[127.0.0.1]:10025", "REDIRECT x@example.org", "HOLD"} {
		c := DefaultConfig()
		c.Greylist.Action = a
		if err := config.Validate("policyd", &c); err == nil || !strings.Contains(err.Error(), "greylist.action") {
			t.Errorf("greylist action %q accepted: %v", a, err)
		}
	}
	for _, a := range []string{"OK", "DISCARD", "REDIRECT x@example.org"} {
		c := DefaultConfig()
		c.RateLimit.Limits[0].Action = a
		if err := config.Validate("policyd", &c); err == nil || !strings.Contains(err.Error(), "action") {
			t.Errorf("rate limit action %q accepted: %v", a, err)
		}
	}
	for _, a := range []string{"HOLD", "HOLD over the limit", "DEFER", "REJECT 5.7.1 no", "451 4.7.1 later", "DEFER_IF_PERMIT later"} {
		c := DefaultConfig()
		c.RateLimit.Limits[0].Action = a
		if err := config.Validate("policyd", &c); err != nil {
			t.Errorf("rate limit action %q refused: %v", a, err)
		}
	}
	for _, a := range []string{"DEFER_IF_PERMIT later", "450 4.2.0 greylisted", "DEFER", "DEFER_IF_REJECT x", "REJECT"} {
		c := DefaultConfig()
		c.Greylist.Action = a
		if err := config.Validate("policyd", &c); err != nil {
			t.Errorf("greylist action %q refused: %v", a, err)
		}
	}
}

// TestSPFTempErrorNeverRejects: a temperror is a DNS failure, not the
// sender's verdict; RFC 7208 §8.6 allows accepting or a temporary
// rejection only. A permanent temperror_action bounced every sender while
// DNS was down, so it is a config error naming the field.
func TestSPFTempErrorNeverRejects(t *testing.T) {
	for _, a := range []string{"REJECT", "550 5.7.24 SPF temporary error", "REJECT 5.7.1 no"} {
		c := DefaultConfig()
		c.SPF.TempErrorAction = a
		if err := config.Validate("policyd", &c); err == nil || !strings.Contains(err.Error(), "spf.temperror_action") {
			t.Errorf("temperror_action %q accepted: %v", a, err)
		}
	}
	for _, a := range []string{"DUNNO", "DEFER_IF_PERMIT 4.7.24 try later", "451 4.4.3 SPF temporary error", "WARN spf temperror"} {
		c := DefaultConfig()
		c.SPF.TempErrorAction = a
		if err := config.Validate("policyd", &c); err != nil {
			t.Errorf("temperror_action %q refused: %v", a, err)
		}
	}
}

func TestExpand(t *testing.T) {
	a := expand(Action{Verb: "REJECT", Text: "{client} says {what} {unknown} {"}, "{client}", "1.2.3.4", "{what}", "hi")
	if a.Text != "1.2.3.4 says hi {unknown} {" {
		t.Fatalf("%q", a.Text)
	}
}

func TestActionParseAndString(t *testing.T) {
	good := map[string]string{
		"reject":                      "REJECT",
		"DEFER_IF_PERMIT  try later ": "DEFER_IF_PERMIT try later",
		"450 4.7.1 Greylisted":        "450 4.7.1 Greylisted",
		"PREPEND X-Test: yes":         "PREPEND X-Test: yes",
		"HOLD":                        "HOLD",
	}
	for in, want := range good {
		a, err := ParseAction(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAction(%q) = %q, %v; want %q", in, a.String(), err, want)
		}
	}
	for _, bad := range []string{"", "MAYBE", "250 ok", "450", "PREPEND", "PREPEND noheader", "REJECT a\nb", "FILTER"} {
		if _, err := ParseAction(bad); err == nil {
			t.Errorf("ParseAction(%q) accepted", bad)
		}
	}
	a := Action{Verb: "REJECT", Text: "bad \r\nsender \xff"}
	if got := a.String(); got != "REJECT bad   sender ?" {
		t.Errorf("sanitized: %q", got)
	}
	if !(Action{Verb: "550"}).Permanent() || (Action{Verb: "450"}).Permanent() || (Action{Verb: "450"}).Label() != "4xx" {
		t.Error("Permanent/Label")
	}
}

// TestActionEnhancedStatusClass: Postfix sends an action's enhanced status
// code as written after the reply code (access(5), RFC 3463: the class must
// be the reply's), so "450 5.7.1" or "REJECT 4.7.1" would reach clients as a
// contradictory "450 5.7.1" / "554 4.7.1". Such an action is a config error,
// and so is text that starts like a status code but is not one, and a
// PREPEND that Postfix would ignore because its text is not a header.
func TestActionEnhancedStatusClass(t *testing.T) {
	good := []string{
		"450 4.7.1 Greylisted", "550 5.7.1 no", "421 4.3.2 going down", "554 Service unavailable",
		"REJECT 5.7.1 no", "REJECT", "DEFER 4.7.1 later", "DEFER_IF_PERMIT 4.3.0 later", "DEFER_IF_REJECT 4.7.1 later",
		"DEFER_IF_PERMIT Greylisted", "HOLD 5 messages held", "DEFER 4.7.1", "550 5.1.10 user unknown",
		"WARN 5.7.1 would have rejected", "PREPEND X-Test: 5.7.1", "PREPEND X-Test : yes", "PREPEND X-Test:",
	}
	for _, in := range good {
		if _, err := ParseAction(in); err != nil {
			t.Errorf("ParseAction(%q): %v", in, err)
		}
	}
	for _, bad := range []string{
		"450 5.7.1 Greylisted", "550 4.7.1 no", "REJECT 4.7.1 no", "REJECT 2.0.0 fine",
		"DEFER 5.7.1 later", "DEFER_IF_PERMIT 5.7.1 later", "DEFER_IF_REJECT 5.7.1 later",
		"450 4.7 Greylisted", "550 5.1.1.1 unknown", "450 4.7.1000 later",
		// Postfix ignores a PREPEND that is not a header.
		"PREPEND X Test: yes", "PREPEND : yes", "PREPEND X-Tést: yes",
	} {
		if _, err := ParseAction(bad); err == nil {
			t.Errorf("ParseAction(%q) accepted", bad)
		}
	}
	cfg := DefaultConfig()
	cfg.RateLimit.Limits[0].Action = "REJECT 4.7.1 Message rate limit exceeded"
	if err := config.Validate("policyd", &cfg); err == nil || !strings.Contains(err.Error(), "4.7.1") {
		t.Fatalf("rate limit action with a 4.x.x code for REJECT accepted: %v", err)
	}
}
