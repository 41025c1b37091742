package authcheck

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/foxcpp/go-mockdns"
	"github.com/miekg/dns"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// dmarcSymbol returns the DMARC symbol of syms.
func dmarcSymbol(syms []spam.Symbol) spam.Symbol {
	for _, s := range syms {
		if strings.HasPrefix(s.Name, "DMARC_") {
			return s
		}
	}
	return spam.Symbol{}
}

// checkFrom checks an unsigned message from fromDomain whose SPF neither
// passes nor aligns, so DMARC fails and its policy decides.
func checkFrom(t *testing.T, c *Checker, fromDomain string) ([]spam.Symbol, Results) {
	t.Helper()
	raw := "From: <ceo@" + fromDomain + ">\r\nSubject: x\r\n\r\nbody\r\n"
	msg := message.Parse([]byte(raw), message.DefaultLimits())
	t.Cleanup(func() { msg.Close() })
	in := &spam.Input{ClientIP: badIP, MailFrom: "x@elsewhere.example", Helo: "mx"}
	syms, err := c.Check(context.Background(), in, msg)
	if err != nil {
		t.Fatal(err)
	}
	return syms, c.Run(context.Background(), in, msg)
}

// keyFlagsChecker returns a signing key and a checker whose DNS holds its
// public key under each selector of example.org, the selector's tags
// appended, with SPF and DMARC records for example.org.
func keyFlagsChecker(t *testing.T, selectors map[string]string) (ed25519.PrivateKey, *Checker) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	zone := map[string]mockdns.Zone{
		"example.org.":        {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}},
		"_dmarc.example.org.": {TXT: []string{"v=DMARC1; p=reject"}},
	}
	for sel, tags := range selectors {
		zone[sel+"._domainkey.example.org."] = mockdns.Zone{TXT: []string{key + tags}}
	}
	return priv, (&fixture{res: mockResolver(t, zone)}).checker(t)
}

// RFC 6376 §3.6.1 key flags: t=y (testing) makes a broken signature count as
// no signature, t=s forbids an i= subdomain of d=.
func TestDKIMKeyFlags(t *testing.T) {
	priv, c := keyFlagsChecker(t, map[string]string{"plain": "", "test": "; t=y", "strict": "; t=s", "both": "; t = s : y", "other": "; t=x:z"})
	sign := func(selector, identifier string, tamper bool) string {
		var out bytes.Buffer
		raw := rawMsg("news@example.org", "Hello\r\n")
		err := dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{Domain: "example.org", Selector: selector, Identifier: identifier, Signer: priv})
		if err != nil {
			t.Fatal(err)
		}
		if tamper {
			return strings.Replace(out.String(), "Hello", "Hell0", 1)
		}
		return out.String()
	}
	for _, tc := range []struct {
		name     string
		selector string
		i        string
		tamper   bool
		ip       string
		want     string
		ar       string // in Authentication-Results
	}{
		{"no flags, passing", "plain", "", false, "203.0.113.5", "DKIM_VALID,DMARC_PASS,SPF_FAIL", "dkim=pass"},
		{"no flags, failing", "plain", "", true, "203.0.113.5", "DKIM_INVALID,DMARC_REJECT,SPF_FAIL", "dkim=fail"},
		// A pass under a testing key counts, as in OpenDKIM and Mail::DKIM.
		{"t=y passing", "test", "", false, "203.0.113.5", "DKIM_VALID,DMARC_PASS,SPF_FAIL", "dkim=pass"},
		{"t=y failing", "test", "", true, "203.0.113.5", "DKIM_TESTING,DMARC_REJECT,SPF_FAIL", "dkim=neutral header.d=example.org"},
		{"t=y failing, spf aligned", "test", "", true, "192.0.2.1", "DKIM_TESTING,DMARC_PASS,SPF_PASS", "dkim=neutral"},
		{"unknown flags ignored", "other", "", true, "203.0.113.5", "DKIM_INVALID,DMARC_REJECT,SPF_FAIL", "dkim=fail"},
		{"no flags, i= subdomain", "plain", "news@mail.example.org", false, "203.0.113.5", "DKIM_VALID,DMARC_PASS,SPF_FAIL", "dkim=pass"},
		{"t=s, i= same domain", "strict", "news@example.org", false, "203.0.113.5", "DKIM_VALID,DMARC_PASS,SPF_FAIL", "dkim=pass"},
		{"t=s, no i=", "strict", "", false, "203.0.113.5", "DKIM_VALID,DMARC_PASS,SPF_FAIL", "dkim=pass"},
		{"t=s, i= subdomain", "strict", "news@mail.example.org", false, "203.0.113.5", "DKIM_PERMERROR,DMARC_REJECT,SPF_FAIL", "dkim=permerror"},
		{"t=s, i= subdomain, no local part", "strict", "@mail.example.org", false, "203.0.113.5", "DKIM_PERMERROR,DMARC_REJECT,SPF_FAIL", "dkim=permerror"},
		// Testing mode: the violation is not held against the signer either.
		{"t=s:y, i= subdomain", "both", "@mail.example.org", false, "203.0.113.5", "DKIM_TESTING,DMARC_REJECT,SPF_FAIL", "dkim=neutral"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := message.Parse([]byte(sign(tc.selector, tc.i, tc.tamper)), message.DefaultLimits())
			defer msg.Close()
			in := &spam.Input{ClientIP: parseIP(tc.ip), MailFrom: "bounce@example.org", Helo: "mx"}
			syms, _ := c.Check(context.Background(), in, msg)
			if got := names(syms); got != tc.want {
				t.Fatalf("symbols %s, want %s", got, tc.want)
			}
			for _, s := range syms {
				if s.Name == "DKIM_TESTING" && s.Score != 0 {
					t.Errorf("DKIM_TESTING scored %v", s.Score)
				}
			}
			if ar := AuthResults("mx.test", syms); !strings.Contains(ar, tc.ar) {
				t.Errorf("Authentication-Results %q lacks %q", ar, tc.ar)
			}
			res := c.Run(context.Background(), in, msg)
			if len(res.DKIM) != 1 {
				t.Fatalf("DKIM results %+v", res.DKIM)
			}
			wantStrict := strings.HasPrefix(tc.name, "t=s") && strings.Contains(tc.name, "i= subdomain")
			if strict := errors.Is(res.DKIM[0].Err, errKeySubdomain); strict != wantStrict {
				t.Errorf("errKeySubdomain %v: %v", strict, res.DKIM[0].Err)
			}
		})
	}
}

// RFC 7489 §6.6.4: pct= applies the policy to that share of failing
// messages, the rest get the next less strict one. An invalid pct= is
// ignored (100).
func TestDMARCPercent(t *testing.T) {
	zone := map[string]mockdns.Zone{}
	for name, rec := range map[string]string{
		"nopct":   "v=DMARC1; p=reject",
		"pct100":  "v=DMARC1; p=reject; pct=100",
		"pct99":   "v=DMARC1; p=reject; pct=99",
		"pct1":    "v=DMARC1; p=reject; pct=1",
		"pct0":    "v=DMARC1; p=reject; pct=0",
		"q50":     "v=DMARC1; p=quarantine; pct=50",
		"q0":      "v=DMARC1; p=quarantine; pct=0",
		"none0":   "v=DMARC1; p=none; pct=0",
		"pctword": "v=DMARC1; p=reject; pct=half",
		"pct101":  "v=DMARC1; p=reject; pct=101",
		"pctneg":  "v=DMARC1; p=reject; pct=-1",
		"subpct":  "v=DMARC1; p=none; sp=reject; pct=10",
	} {
		zone["_dmarc."+name+".example."] = mockdns.Zone{TXT: []string{rec}}
	}
	c := (&fixture{res: mockResolver(t, zone)}).checker(t)
	for _, tc := range []struct {
		domain  string
		sample  int // the draw in [0, 100)
		want    string
		dis     string
		comment string
	}{
		{"nopct.example", 99, "DMARC_REJECT", "reject", ""},
		{"pct100.example", 99, "DMARC_REJECT", "reject", ""},
		{"pct99.example", 98, "DMARC_REJECT", "reject", ""},
		{"pct99.example", 99, "DMARC_QUARANTINE", "quarantine", "(p=reject dis=quarantine)"},
		{"pct1.example", 0, "DMARC_REJECT", "reject", ""},
		{"pct1.example", 1, "DMARC_QUARANTINE", "quarantine", "(p=reject dis=quarantine)"},
		{"pct0.example", 0, "DMARC_QUARANTINE", "quarantine", "(p=reject dis=quarantine)"},
		{"q50.example", 49, "DMARC_QUARANTINE", "quarantine", ""},
		{"q50.example", 50, "DMARC_POLICY_NONE", "none", "(p=quarantine dis=none)"},
		{"q0.example", 0, "DMARC_POLICY_NONE", "none", "(p=quarantine dis=none)"},
		{"none0.example", 0, "DMARC_POLICY_NONE", "none", ""},
		{"pctword.example", 99, "DMARC_REJECT", "reject", ""},
		{"pct101.example", 99, "DMARC_REJECT", "reject", ""},
		{"pctneg.example", 99, "DMARC_REJECT", "reject", ""},
		{"sub.subpct.example", 9, "DMARC_REJECT", "reject", ""},
		{"sub.subpct.example", 10, "DMARC_QUARANTINE", "quarantine", "(p=reject dis=quarantine)"},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			c.sample = func() int { return tc.sample }
			syms, res := checkFrom(t, c, tc.domain)
			s := dmarcSymbol(syms)
			if s.Name != tc.want || res.DMARC.Disposition != tc.dis {
				t.Fatalf("sample %d: %s, disposition %q; want %s, %q", tc.sample, s.Name, res.DMARC.Disposition, tc.want, tc.dis)
			}
			if !strings.Contains(strings.Join(s.Options, " "), "dis="+tc.dis) {
				t.Errorf("options %v lack dis=%s", s.Options, tc.dis)
			}
			// The comment says when sampling applied a less strict policy.
			want := "dmarc=fail " + tc.comment + " header.from=" + tc.domain
			if tc.comment == "" {
				want = "dmarc=fail header.from=" + tc.domain
			}
			if ar := AuthResults("mx.test", syms); !strings.Contains(ar, want) {
				t.Errorf("Authentication-Results %q lacks %q", ar, want)
			}
		})
	}
}

// RFC 9091: for a From domain that does not exist (NXDOMAIN or NODATA for
// A, AAAA and MX) under the organizational domain's record, np= applies.
func TestDMARCNonExistentPolicy(t *testing.T) {
	zone := map[string]mockdns.Zone{
		"_dmarc.np.example.":      {TXT: []string{"v=DMARC1; p=none; sp=quarantine; np=reject"}},
		"np.example.":             {A: []string{"192.0.2.10"}},
		"a.np.example.":           {A: []string{"192.0.2.10"}},
		"aaaa.np.example.":        {AAAA: []string{"2001:db8::10"}},
		"mx.np.example.":          {MX: []net.MX{{Host: "mail.np.example.", Pref: 10}}},
		"nullmx.np.example.":      {MX: []net.MX{{Host: ".", Pref: 0}}},
		"txtonly.np.example.":     {TXT: []string{"hello"}},
		"servfail.np.example.":    {Err: errors.New("servfail")},
		"_dmarc.nonp.example.":    {TXT: []string{"v=DMARC1; p=reject; sp=quarantine"}},
		"_dmarc.same.example.":    {TXT: []string{"v=DMARC1; p=none; sp=reject; np=reject"}},
		"servfail.same.example.":  {Err: errors.New("servfail")},
		"_dmarc.nosp.example.":    {TXT: []string{"v=DMARC1; p=quarantine; NP=Reject"}},
		"_dmarc.badnp.example.":   {TXT: []string{"v=DMARC1; p=reject; sp=quarantine; np=block"}},
		"_dmarc.nppct.example.":   {TXT: []string{"v=DMARC1; p=none; np=reject; pct=0"}},
		"_dmarc.own.np.example.":  {TXT: []string{"v=DMARC1; p=quarantine"}},
		"_dmarc.lenient.example.": {TXT: []string{"v=DMARC1; p=reject; np=none"}},
	}
	c := (&fixture{res: mockResolver(t, zone)}).checker(t)
	for _, tc := range []struct {
		domain      string
		want        string
		nonExistent bool
	}{
		{"a.np.example", "DMARC_QUARANTINE", false},
		{"aaaa.np.example", "DMARC_QUARANTINE", false},
		{"mx.np.example", "DMARC_QUARANTINE", false},
		{"nullmx.np.example", "DMARC_QUARANTINE", false},
		{"ghost.np.example", "DMARC_REJECT", true},   // NXDOMAIN
		{"txtonly.np.example", "DMARC_REJECT", true}, // NODATA counts too (§2.1)
		{"servfail.np.example", "DMARC_TEMPERROR", false},
		{"np.example", "DMARC_POLICY_NONE", false},        // the organizational domain: p=
		{"own.np.example", "DMARC_QUARANTINE", false},     // its own record: np= is not consulted
		{"ghost.nonp.example", "DMARC_QUARANTINE", false}, // no np=: sp=
		{"servfail.same.example", "DMARC_REJECT", false},  // np= = sp=: nothing to look up
		{"ghost.nosp.example", "DMARC_REJECT", true},
		{"ghost.badnp.example", "DMARC_QUARANTINE", false}, // invalid np= ignored
		{"ghost.nppct.example", "DMARC_QUARANTINE", true},  // pct= samples np= too
		{"ghost.lenient.example", "DMARC_POLICY_NONE", true},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			c.sample = func() int { return 99 }
			syms, res := checkFrom(t, c, tc.domain)
			if got := dmarcSymbol(syms).Name; got != tc.want || res.DMARC.NonExistent != tc.nonExistent {
				t.Errorf("%s, nonexistent %v; want %s, %v (%+v)", got, res.DMARC.NonExistent, tc.want, tc.nonExistent, res.DMARC)
			}
		})
	}
}

// typeDNS is a DNS server that answers per query type, which mockdns cannot:
// answers[name][qtype] is the rcode, with rr (if any) as the answer, and a
// name or type it does not list is NODATA. Errors are answered at once and
// the rest after a few milliseconds, as by a resolver that caches failures
// (RFC 9520): Go's resolver asks for A and AAAA in parallel and the order of
// their answers matters to it.
func typeDNS(t *testing.T, answers map[string]map[uint16]int, rr map[string]dns.RR) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		m.Rcode = answers[name][q.Qtype]
		if m.Rcode == dns.RcodeSuccess {
			if a, ok := rr[name+dns.TypeToString[q.Qtype]]; ok {
				m.Answer = append(m.Answer, a)
			}
			time.Sleep(20 * time.Millisecond)
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp4", pc.LocalAddr().String())
	}}
}

// RFC 9091 §2.1 needs NXDOMAIN or NODATA for A, AAAA and MX each: a SERVFAIL
// on one of them leaves existence unknown, which must be a temperror and not
// the stricter np=, even when the other answers say "no data". Go's resolver
// merges A and AAAA into one lookup whose error is the last answer's.
func TestDMARCNonExistentPolicyPartialServfail(t *testing.T) {
	txt := func(name, v string) dns.RR {
		return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}}
	}
	rr := map[string]dns.RR{"_dmarc.np.example.TXT": txt("_dmarc.np.example.", "v=DMARC1; p=none; np=reject")}
	for _, tc := range []struct {
		name   string
		failed uint16
	}{{"a", dns.TypeA}, {"aaaa", dns.TypeAAAA}, {"mx", dns.TypeMX}} {
		t.Run(tc.name, func(t *testing.T) {
			domain := "flaky-" + tc.name + ".np.example"
			answers := map[string]map[uint16]int{
				"elsewhere.example.": {dns.TypeTXT: dns.RcodeNameError},
				domain + ".":         {tc.failed: dns.RcodeServerFailure},
			}
			c := (&fixture{res: typeDNS(t, answers, rr)}).checker(t)
			c.sample = func() int { return 99 }
			syms, res := checkFrom(t, c, domain)
			if got := dmarcSymbol(syms).Name; got != "DMARC_TEMPERROR" || res.DMARC.NonExistent {
				t.Errorf("%s SERVFAIL: %s, nonexistent %v; want DMARC_TEMPERROR (%+v)", dns.TypeToString[tc.failed], got, res.DMARC.NonExistent, res.DMARC)
			}
		})
	}
}

// Each signature gets the t= flags of its own key, whatever else the header
// holds. go-msgauth does not return the flags or the selector, so the checker
// ties its results to the signatures itself: a field only go-msgauth counts as
// a signature (a "DKIM-Signature" line without a colon, which the lenient
// header parser drops) must not shift one signature onto another's key.
func TestDKIMKeyFlagsPerSignature(t *testing.T) {
	priv, c := keyFlagsChecker(t, map[string]string{"test": "; t=y", "strict": "; t=s"})
	sign := func(raw, selector, identifier string) string {
		var out bytes.Buffer
		err := dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{Domain: "example.org", Selector: selector, Identifier: identifier, Signer: priv})
		if err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	// Signed under the testing key, then (on top) under the strict key with
	// an i= subdomain that t=s forbids.
	signed := sign(sign(rawMsg("news@example.org", "Hello\r\n"), "test", ""), "strict", "@mail.example.org")
	type want struct {
		testing, subdomain bool
	}
	for _, tc := range []struct {
		name   string
		prefix string
		want   []want
	}{
		{"two signatures", "", []want{{false, true}, {true, false}}},
		{"colon-less field first", "DKIM-Signature\r\n", []want{{false, false}, {false, true}, {true, false}}},
		{"empty field first", "DKIM-Signature:\r\n", []want{{false, false}, {false, true}, {true, false}}},
		// go-msgauth strips any Unicode space from s= before the lookup (the
		// edit breaks both signatures, the strict one signs the other; the
		// key is still the testing one).
		{"no-break space in s=", "", []want{{false, false}, {true, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := signed
			if strings.Contains(tc.name, "no-break") {
				raw = strings.Replace(raw, "s=test", "s=te\u00a0st", 1)
			}
			msg := message.Parse([]byte(tc.prefix+raw), message.DefaultLimits())
			defer msg.Close()
			in := &spam.Input{ClientIP: badIP, MailFrom: "bounce@example.org", Helo: "mx"}
			res := c.Run(context.Background(), in, msg)
			if len(res.DKIM) != len(tc.want) {
				t.Fatalf("DKIM results %+v, want %d", res.DKIM, len(tc.want))
			}
			for i, w := range tc.want {
				r := res.DKIM[i]
				if r.Testing != w.testing || errors.Is(r.Err, errKeySubdomain) != w.subdomain {
					t.Errorf("signature %d: testing %v, err %v; want testing %v, t=s violation %v", i, r.Testing, r.Err, w.testing, w.subdomain)
				}
			}
		})
	}
}
