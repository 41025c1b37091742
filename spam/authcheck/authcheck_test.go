package authcheck

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/foxcpp/go-mockdns"

	"github.com/dovetail-mail/dovetail/dnsbl"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

var (
	goodIP = net.ParseIP("192.0.2.1")
	badIP  = net.ParseIP("203.0.113.5")
)

type fixture struct {
	key  ed25519.PrivateKey
	res  *net.Resolver
	zone map[string]mockdns.Zone
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{key: priv}
	f.zone = map[string]mockdns.Zone{
		"example.org.":                {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}},
		"mail.example.org.":           {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}},
		"soft.example.":               {TXT: []string{"v=spf1 ip4:192.0.2.1 ~all"}},
		"broken.example.":             {TXT: []string{"v=spf1 ip4:not-an-ip -all"}},
		"dnsfail.example.":            {Err: errors.New("servfail")},
		"sel._domainkey.example.org.": {TXT: []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}},
		"_dmarc.example.org.":         {TXT: []string{"v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=r"}},
		"strict.example.":             {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}},
		"mail.strict.example.":        {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}},
		"_dmarc.strict.example.":      {TXT: []string{"v=DMARC1; p=quarantine; aspf=s; adkim=s"}},
		"_dmarc.soft.example.":        {TXT: []string{"v=DMARC1; p=none"}},
		"_dmarc.dnsfail.example.":     {Err: errors.New("servfail")},
		// A record using the sender macros (RFC 7208 §7.3), as ESPs do.
		"mx.macro.example.": {TXT: []string{"v=spf1 exists:%{l}.%{o}._spf.macro.example -all"}},
		"postmaster.mx.macro.example._spf.macro.example.": {A: []string{"127.0.0.2"}},
		"bounce.macro.example._spf.macro.example.":        {A: []string{"127.0.0.2"}},
		"macro.example.": {TXT: []string{"v=spf1 exists:%{l}.%{o}._spf.macro.example -all"}},
	}
	f.res = mockResolver(t, f.zone)
	return f
}

// mockResolver returns a resolver that asks a mock DNS server serving zones
// for the rest of the test.
func mockResolver(t *testing.T, zones map[string]mockdns.Zone) *net.Resolver {
	t.Helper()
	srv, err := mockdns.NewServerWithLogger(zones, quiet{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r := &net.Resolver{PreferGo: true}
	srv.PatchNet(r)
	return r
}

func (f *fixture) checker(t *testing.T) *Checker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Timeout = config.Duration(2 * time.Second)
	c, err := New(cfg, f.res)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) sign(t *testing.T, domain, raw string) string {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{Domain: domain, Selector: "sel", Signer: f.key})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func rawMsg(from, body string) string {
	return "From: Sender <" + from + ">\r\nTo: alice@example.com\r\nSubject: test\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\n" + body
}

// check parses raw and returns c's symbols for it (the error is the tests'
// concern only where they check it themselves).
func check(c *Checker, in *spam.Input, raw string) []spam.Symbol {
	msg := message.Parse([]byte(raw), message.DefaultLimits())
	defer msg.Close()
	syms, _ := c.Check(context.Background(), in, msg)
	return syms
}

func names(syms []spam.Symbol) string {
	var n []string
	for _, s := range syms {
		n = append(n, s.Name)
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

func TestAuthChecks(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t)
	signed := f.sign(t, "example.org", rawMsg("news@example.org", "Hello\r\n"))
	tampered := strings.Replace(signed, "Hello", "Hell0", 1)
	for _, tc := range []struct {
		name     string
		ip       net.IP
		mailFrom string
		helo     string
		raw      string
		want     string
	}{
		{"spf pass, dkim pass, dmarc pass", goodIP, "bounce@example.org", "mx.example.org", signed,
			"DKIM_VALID,DMARC_PASS,SPF_PASS"},
		{"spf fail, unsigned, dmarc reject", badIP, "bounce@example.org", "mx.bad", rawMsg("ceo@example.org", "wire money\r\n"),
			"DKIM_NONE,DMARC_REJECT,SPF_FAIL"},
		{"spf fail but aligned dkim: dmarc pass", badIP, "bounce@example.org", "fwd.example", signed,
			"DKIM_VALID,DMARC_PASS,SPF_FAIL"},
		{"tampered body: dkim invalid, spf aligned pass", goodIP, "x@example.org", "mx", tampered,
			"DKIM_INVALID,DMARC_PASS,SPF_PASS"},
		{"tampered body, spf fail: dmarc reject", badIP, "x@example.org", "mx", tampered,
			"DKIM_INVALID,DMARC_REJECT,SPF_FAIL"},
		{"subdomain without record: org sp=quarantine", badIP, "x@news.example.org", "mx", rawMsg("x@news.example.org", "hi\r\n"),
			"DKIM_NONE,DMARC_QUARANTINE,SPF_NONE"},
		{"softfail, policy none", badIP, "x@soft.example", "mx", rawMsg("x@soft.example", "hi\r\n"),
			"DKIM_NONE,DMARC_POLICY_NONE,SPF_SOFTFAIL"},
		{"strict alignment: subdomain spf pass does not align", goodIP, "x@mail.strict.example", "mx", rawMsg("x@strict.example", "hi\r\n"),
			"DKIM_NONE,DMARC_QUARANTINE,SPF_PASS"},
		{"relaxed alignment: subdomain spf pass aligns", goodIP, "x@mail.example.org", "mx", rawMsg("x@example.org", "hi\r\n"),
			"DKIM_NONE,DMARC_PASS,SPF_PASS"},
		{"permerror", goodIP, "x@broken.example", "mx", rawMsg("x@nodmarc.example", "hi\r\n"),
			"DKIM_NONE,DMARC_NONE,SPF_PERMERROR"},
		{"dns failure is temperror", goodIP, "x@dnsfail.example", "mx", rawMsg("x@dnsfail.example", "hi\r\n"),
			"DKIM_NONE,DMARC_TEMPERROR,SPF_TEMPERROR"},
		{"null sender checks helo", goodIP, "", "example.org", rawMsg("mailer-daemon@other.example", "bounce\r\n"),
			"DKIM_NONE,DMARC_NONE,SPF_PASS"},
		// RFC 7489 §4.1: DMARC uses SPF's MAIL FROM result, which for the null
		// path is postmaster@HELO (RFC 7208 §2.4): an unsigned bounce from
		// the domain's own MX passes.
		{"null sender: helo spf pass aligns", goodIP, "", "mail.example.org", rawMsg("MAILER-DAEMON@example.org", "bounce\r\n"),
			"DKIM_NONE,DMARC_PASS,SPF_PASS"},
		{"null sender: helo spf fail does not align", badIP, "", "mail.example.org", rawMsg("MAILER-DAEMON@example.org", "bounce\r\n"),
			"DKIM_NONE,DMARC_REJECT,SPF_FAIL"},
		// RFC 7208 §2.4/§4.3: for the null path <sender> is postmaster@HELO,
		// so %{l} and %{o} expand to postmaster and the HELO name.
		{"sender macros", goodIP, "bounce@macro.example", "mx", rawMsg("x@nodmarc.example", "hi\r\n"),
			"DKIM_NONE,DMARC_NONE,SPF_PASS"},
		{"null sender: sender macros expand to postmaster@helo", goodIP, "", "mx.macro.example", rawMsg("x@nodmarc.example", "bounce\r\n"),
			"DKIM_NONE,DMARC_NONE,SPF_PASS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := message.Parse([]byte(tc.raw), message.DefaultLimits())
			defer msg.Close()
			in := &spam.Input{ClientIP: tc.ip, MailFrom: tc.mailFrom, Helo: tc.helo}
			syms, err := c.Check(context.Background(), in, msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(syms); got != tc.want {
				t.Errorf("symbols %s, want %s (%v)", got, tc.want, syms)
			}
		})
	}
}

func TestSkipsAuthenticated(t *testing.T) {
	f := newFixture(t)
	msg := message.Parse([]byte(rawMsg("ceo@example.org", "x\r\n")), message.DefaultLimits())
	syms, _ := f.checker(t).Check(context.Background(), &spam.Input{ClientIP: badIP, MailFrom: "ceo@example.org", AuthUser: "ceo"}, msg)
	if len(syms) != 0 {
		t.Errorf("authenticated submission checked: %v", syms)
	}
}

// A resolver that never answers yields temperror symbols within the timeout.
// stallResolver answers no query at all (not even by asking the system's
// resolver) and records how long each query was allowed to wait.
type stallResolver struct {
	mu    sync.Mutex
	waits []time.Duration // per query: its deadline less the time it was asked
	bare  int             // queries without a deadline
}

func (s *stallResolver) stall(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dl, ok := ctx.Deadline()
	if !ok {
		s.bare++ // would wait for ever: fail the query, the test reports it
		return errors.New("stallResolver: query without a deadline")
	}
	s.waits = append(s.waits, time.Until(dl))
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	return ctx.Err()
}

func (s *stallResolver) LookupTXT(ctx context.Context, _ string) ([]string, error) {
	return nil, s.stall(ctx)
}

func (s *stallResolver) LookupMX(ctx context.Context, _ string) ([]*net.MX, error) {
	return nil, s.stall(ctx)
}

func (s *stallResolver) LookupIPAddr(ctx context.Context, _ string) ([]net.IPAddr, error) {
	return nil, s.stall(ctx)
}

func (s *stallResolver) LookupAddr(ctx context.Context, _ string) ([]string, error) {
	return nil, s.stall(ctx)
}

func (s *stallResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	return nil, s.stall(ctx)
}

func TestDNSTimeoutIsTemperror(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Timeout = config.Duration(30 * time.Millisecond)
	res := &stallResolver{}
	c, err := New(cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	raw := f.sign(t, "example.org", rawMsg("news@example.org", "Hello\r\n"))
	msg := message.Parse([]byte(raw), message.DefaultLimits())
	start := time.Now()
	syms, err := c.Check(context.Background(), &spam.Input{ClientIP: goodIP, MailFrom: "a@example.org", Helo: "mx"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(syms); got != "DKIM_TEMPERROR,DMARC_TEMPERROR,SPF_TEMPERROR" {
		t.Errorf("symbols %s", got)
	}
	// Each query may wait the configured timeout and no longer: checked on
	// the deadline every query carried, not on the wall clock, which a
	// loaded machine stretches (a 1 s bound on the whole check, a handful
	// of 30 ms waits, failed under CPU starvation).
	res.mu.Lock()
	if res.bare > 0 {
		t.Errorf("%d DNS queries without a deadline", res.bare)
	}
	if len(res.waits) == 0 {
		t.Error("no DNS query was asked")
	}
	for i, w := range res.waits {
		if w > cfg.Timeout.D() {
			t.Errorf("query %d may wait %v, more than the %v timeout", i, w, cfg.Timeout.D())
		}
	}
	res.mu.Unlock()
	// And the check as a whole waits for nothing else (a generous bound:
	// it is a few sequential 30 ms waits on an idle machine).
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	for _, s := range syms {
		if s.Score != 0 {
			t.Errorf("%s scored %v", s.Name, s.Score)
		}
	}
}

// refusingResolver answers every TXT query the way Go's resolver reports a
// REFUSED, NOTIMP or FORMERR reply: a DNSError that is not temporary.
type refusingResolver struct{ *net.Resolver }

func (refusingResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	return nil, &net.DNSError{Err: "server misbehaving", Name: name, Server: "192.0.2.53:53"}
}

// A resolver that refuses queries is a DNS failure: temperror everywhere
// (RFC 7208 §4.4, RFC 6376 §6.1.2), never SPF_PERMERROR or DKIM_INVALID.
func TestDNSRefusedIsTemperror(t *testing.T) {
	c, err := New(DefaultConfig(), refusingResolver{&net.Resolver{}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	raw := f.sign(t, "example.org", rawMsg("news@example.org", "Hello\r\n"))
	msg := message.Parse([]byte(raw), message.DefaultLimits())
	syms, err := c.Check(context.Background(), &spam.Input{ClientIP: goodIP, MailFrom: "a@example.org", Helo: "mx"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(syms); got != "DKIM_TEMPERROR,DMARC_TEMPERROR,SPF_TEMPERROR" {
		t.Errorf("symbols %s", got)
	}
}

func TestAuthResultsHeader(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t)
	signed := f.sign(t, "example.org", rawMsg("news@example.org", "Hello\r\n"))
	msg := message.Parse([]byte(signed), message.DefaultLimits())
	syms, _ := c.Check(context.Background(), &spam.Input{ClientIP: goodIP, MailFrom: "bounce@example.org", Helo: "mx"}, msg)
	syms = append(syms, spam.Symbol{Name: "BAYES_99", Score: 3})
	got := AuthResults("mail.example.test", syms)
	for _, want := range []string{"mail.example.test;", "spf=pass", "smtp.mailfrom=bounce@example.org", "dkim=pass", "header.d=example.org", "dmarc=pass", "header.from=example.org"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "bayes") {
		t.Errorf("non-auth symbol rendered: %q", got)
	}
	if AuthResults("x", []spam.Symbol{{Name: "GTUBE"}}) != "" {
		t.Error("header without auth symbols")
	}
}

func TestListCheck(t *testing.T) {
	r := mockResolver(t, map[string]mockdns.Zone{
		"7.100.51.198.zen.test.":      {A: []string{"127.0.0.4"}},
		"spam-site.example.dbl.test.": {A: []string{"127.0.1.2"}},
	})
	cfg := dnsbl.DefaultConfig()
	cfg.Zones = []dnsbl.Zone{
		{Zone: "zen.test", Kind: dnsbl.KindIP, Returns: []dnsbl.Return{{Code: "127.0.0.2", Symbol: "RBL_SBL", Score: 4}, {Code: "127.0.0.4", Symbol: "RBL_XBL", Score: 5}}},
		{Zone: "dbl.test", Kind: dnsbl.KindDomain, Symbol: "DBL_SPAM", Score: 3},
	}
	lc, err := NewListCheck(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawMsg("a@b.example", "see http://www.spam-site.example/x and https://ok.example/ and http://a.b.spam-site.example/\r\n")
	msg := message.Parse([]byte(raw), message.DefaultLimits())
	syms, err := lc.Check(context.Background(), &spam.Input{ClientIP: net.ParseIP("198.51.100.7")}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(syms); got != "DBL_SPAM,RBL_XBL" {
		t.Fatalf("symbols %s (%v)", got, syms)
	}
	for _, s := range syms {
		if s.Name == "RBL_XBL" && s.Score != 5 || s.Name == "DBL_SPAM" && (s.Score != 3 || len(s.Options) != 1) {
			t.Errorf("%+v", s)
		}
	}
	// Loopback clients are never looked up.
	syms, _ = lc.Check(context.Background(), &spam.Input{ClientIP: net.ParseIP("127.0.0.1")}, message.Parse([]byte(rawMsg("a@b.example", "x\r\n")), message.DefaultLimits()))
	if len(syms) != 0 {
		t.Errorf("loopback looked up: %v", syms)
	}
}

// quiet drops go-mockdns's per-query trace.
type quiet struct{}

func (quiet) Printf(string, ...any) {}

// A link written with a Unicode host (or an ideographic full stop, which IDNA
// maps to '.') reaches the same site as its A-label form, which is what the
// lists carry: writing it so must not take a listed domain past URIBL/DBL.
func TestURIDomainsIDN(t *testing.T) {
	raw := rawMsg("a@b.example", "see http://www.späm-site.example/x and http://www.spam-site\u3002example/y and http://under_score.example/\r\n")
	msg := message.Parse([]byte(raw), message.DefaultLimits())
	defer msg.Close()
	got := strings.Join(URIDomains(msg), ",")
	if want := "xn--spm-site-1za.example,spam-site.example,under_score.example"; got != want {
		t.Errorf("URIDomains = %s, want %s", got, want)
	}
}

// Envelope values reach Authentication-Results verbatim: a MAIL FROM with a
// quoted local part, or a HELO argument, must not be able to add results.
// go-msgauth escapes '"' but not '\' when quoting, so `\"` in the value
// closed the quoted string and the rest parsed as a result of our own.
func TestAuthResultsEnvelopeInjection(t *testing.T) {
	for _, tc := range []struct {
		name string
		syms []spam.Symbol
		want string // the one property value rendered, "" for none
	}{
		{"quoted local part", []spam.Symbol{{Name: "SPF_PASS", Options: []string{`smtp.mailfrom="a\"; dkim=pass header.d=paypal.com"@evil.example`}}}, "evil.example"},
		{"quoted local part, unescaped", []spam.Symbol{{Name: "SPF_PASS", Options: []string{`smtp.mailfrom=a"; dkim=pass header.d=paypal.com@evil.example`}}}, "evil.example"},
		{"helo", []spam.Symbol{{Name: "SPF_NONE", Options: []string{`smtp.helo=x\"; dkim=pass header.d=paypal.com`}}}, ""},
		{"dkim domain", []spam.Symbol{{Name: "DKIM_INVALID", Options: []string{`header.d=x\"dkim=pass`}}}, ""},
		// Ordinary values that go-msgauth quotes are left alone.
		{"SRS sender", []spam.Symbol{{Name: "SPF_PASS", Options: []string{"smtp.mailfrom=SRS0=ab12=XY=example.com=user@fwd.example"}}}, "SRS0=ab12=XY=example.com=user@fwd.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := AuthResults("mx.test", tc.syms)
			if strings.Contains(v, "paypal") || strings.Contains(v, `\`) {
				t.Errorf("rendered %q", v)
			}
			_, results, err := authres.Parse(v)
			if err != nil || len(results) != 1 {
				t.Fatalf("%q parsed as %d results (%v), want 1", v, len(results), err)
			}
			var got string
			switch r := results[0].(type) {
			case *authres.SPFResult:
				got = r.From + r.Helo
			case *authres.DKIMResult:
				got = r.Domain
			}
			if strings.Trim(got, `"`) != tc.want {
				t.Errorf("%q: property %q, want %q", v, got, tc.want)
			}
		})
	}
}
