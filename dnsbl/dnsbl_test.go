package dnsbl

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/foxcpp/go-mockdns"
)

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

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Zones = []Zone{
		{Zone: "zen.test", Kind: KindIP, IPv6: true, Returns: []Return{
			{Code: "127.0.0.2", Symbol: "RBL_SBL", Score: 4},
			{Code: "127.0.0.4", Symbol: "RBL_XBL", Score: 5},
			{Code: "127.0.0.10", Symbol: "RBL_PBL", Score: 1.5},
		}},
		{Zone: "bl.test", Kind: KindIP, Symbol: "RBL_OTHER", Score: 2},
		{Zone: "multi.uribl.test", Kind: KindDomain, Returns: []Return{
			{Bitmask: 2, Symbol: "URIBL_BLACK", Score: 6},
			{Bitmask: 4, Symbol: "URIBL_GREY", Score: 1},
		}},
		{Zone: "dbl.test", Kind: KindDomain, Symbol: "DBL_SPAM", Score: 3},
	}
	return cfg
}

func symbols(r Result) []string {
	var s []string
	for _, h := range r.Hits {
		s = append(s, h.Symbol)
	}
	sort.Strings(s)
	return s
}

func TestReverseIP(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.2", "2.0.0.127"},
		{"::ffff:192.0.2.1", "1.2.0.192"},
		{"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"},
	} {
		if got := ReverseIP(netip.MustParseAddr(tc.in)); got != tc.want {
			t.Errorf("ReverseIP(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestCheckIP(t *testing.T) {
	r := mockResolver(t, map[string]mockdns.Zone{
		"2.0.0.127.zen.test.": {A: []string{"127.0.0.2", "127.0.0.10"}},
		"3.0.0.127.zen.test.": {A: []string{"127.0.0.4"}},
		"3.0.0.127.bl.test.":  {A: []string{"127.0.0.9"}},
		"9.0.0.127.zen.test.": {A: []string{"127.255.255.254"}}, // "resolver blocked"
		"8.0.0.127.zen.test.": {Err: errors.New("servfail")},
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test.": {A: []string{"127.0.0.4"}},
	})
	c, err := New(testConfig(), r)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip      string
		want    []string
		tempErr int
	}{
		{"127.0.0.1", nil, 0},
		{"127.0.0.2", []string{"RBL_PBL", "RBL_SBL"}, 0},
		{"127.0.0.3", []string{"RBL_OTHER", "RBL_XBL"}, 0},
		{"127.0.0.9", nil, 1},
		{"127.0.0.8", nil, 1},
		{"2001:db8::1", []string{"RBL_XBL"}, 0}, // bl.test has ipv6 off: one query only
	} {
		res := c.CheckIP(context.Background(), netip.MustParseAddr(tc.ip))
		if got := symbols(res); !equal(got, tc.want) || len(res.Errors) != tc.tempErr {
			t.Errorf("%s: got %v errors %v, want %v and %d errors", tc.ip, got, res.Errors, tc.want, tc.tempErr)
		}
		for _, e := range res.Errors {
			if !errors.Is(e, ErrTemporary) {
				t.Errorf("%s: error %v is not ErrTemporary", tc.ip, e)
			}
		}
	}
}

func TestCheckDomainsBitmaskDedup(t *testing.T) {
	r := mockResolver(t, map[string]mockdns.Zone{
		"spam.example.multi.uribl.test.": {A: []string{"127.0.0.6"}}, // black + grey
		"spam.example.dbl.test.":         {A: []string{"127.0.1.2"}},
		"grey.example.multi.uribl.test.": {A: []string{"127.0.0.4"}},
	})
	c, err := New(testConfig(), r)
	if err != nil {
		t.Fatal(err)
	}
	res := c.CheckDomains(context.Background(), []string{"Spam.Example", "spam.example.", "grey.example", "ok.example", "not a domain", ""})
	want := []string{"DBL_SPAM", "URIBL_BLACK", "URIBL_GREY", "URIBL_GREY"}
	if got := symbols(res); !equal(got, want) || len(res.Errors) != 0 {
		t.Fatalf("got %v %v, want %v", got, res.Errors, want)
	}
}

// countingResolver counts queries and can stall.
type countingResolver struct {
	n     atomic.Int32
	nets  sync.Map // networks asked for
	delay time.Duration
	addrs []string
}

func (c *countingResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	c.n.Add(1)
	c.nets.Store(network, true)
	if c.delay > 0 {
		select {
		case <-time.After(c.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var out []netip.Addr
	for _, s := range c.addrs {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}
func (c *countingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return nil, nil
}

func TestCacheAndCap(t *testing.T) {
	cr := &countingResolver{addrs: []string{"127.0.0.2"}}
	cfg := testConfig()
	cfg.MaxQueries = 3
	c, err := New(cfg, cr)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.7")
	c.CheckIP(context.Background(), ip)
	c.CheckIP(context.Background(), ip)
	if n := cr.n.Load(); n != 2 {
		t.Errorf("two zones queried twice: %d queries, want 2 (cache)", n)
	}
	// Lists answer A records: an AAAA query beside each doubled the lookups.
	cr.nets.Range(func(k, _ any) bool {
		if k != "ip4" {
			t.Errorf("queried network %q, want only ip4", k)
		}
		return true
	})
	res := c.CheckDomains(context.Background(), []string{"a.example", "b.example"})
	if len(res.Errors) != 1 || len(res.Hits) != 3 {
		t.Errorf("cap: %d hits %d errors, want 3 and 1", len(res.Hits), len(res.Errors))
	}
}

func TestTimeoutAndBudget(t *testing.T) {
	cr := &countingResolver{delay: time.Second, addrs: []string{"127.0.0.2"}}
	cfg := testConfig()
	cfg.Timeout = config.Duration(30 * time.Millisecond)
	cfg.Budget = config.Duration(50 * time.Millisecond)
	cfg.Concurrency = 1
	c, err := New(cfg, cr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := c.CheckDomains(context.Background(), []string{"a.example", "b.example", "c.example"})
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v, budget 50ms", d)
	}
	if len(res.Hits) != 0 || len(res.Errors) != 6 {
		t.Errorf("got %d hits %d errors, want 0 and 6", len(res.Hits), len(res.Errors))
	}
}

func TestValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Zones = []Zone{
		{Zone: "", Kind: "x"},
		{Zone: "a.test", Kind: KindIP, Returns: []Return{{Code: "nope", Symbol: "X"}, {Symbol: "Y"}}},
		{Zone: "zen.test", Kind: KindIP, Symbol: "Z"},
		{Zone: "Zen.test.", Kind: KindIP, Symbol: "Z2"}, // the same zone: its codes would be dropped
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"zones[0].zone", "zones[0].kind", "zones[1].returns[0].code", "zones[1].returns[1]", "zones[3].zone"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %s", err, want)
		}
	}
	if err := testConfig().Validate(); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// quiet drops go-mockdns's per-query trace.
type quiet struct{}

func (quiet) Printf(string, ...any) {}

// 127.0.0.1 is URIBL/SURBL's "query refused" (hostkarma's "whitelisted"):
// neither the zone's own symbol nor a bit mask takes it for a listing; an
// explicit return code still can.
func TestRefusedIsNotListed(t *testing.T) {
	zone := func(symbol string, returns ...Return) *Zone {
		return &Zone{Zone: "z.test", Kind: KindDomain, Symbol: symbol, Score: 3, Returns: returns}
	}
	for _, tc := range []struct {
		name  string
		zone  *Zone
		codes []string
		want  string
	}{
		{"zone symbol, refused", zone("DBL"), []string{"127.0.0.1"}, ""},
		{"zone symbol, listed", zone("DBL"), []string{"127.0.0.2"}, "DBL"},
		{"zone symbol, refused and listed", zone("DBL"), []string{"127.0.0.1", "127.0.1.2"}, "DBL"},
		{"bitmask 1, refused", zone("", Return{Bitmask: 1, Symbol: "B1"}), []string{"127.0.0.1"}, ""},
		{"bitmask, no match, refused", zone("DBL", Return{Bitmask: 2, Symbol: "BLACK"}), []string{"127.0.0.1"}, ""},
		{"bitmask match", zone("DBL", Return{Bitmask: 2, Symbol: "BLACK"}), []string{"127.0.0.3"}, "BLACK"},
		{"explicit code", zone("DBL", Return{Code: "127.0.0.1", Symbol: "WHITE"}), []string{"127.0.0.1"}, "WHITE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, h := range match(query{name: "x.example.z.test", item: "x.example", zone: tc.zone}, tc.codes) {
				got = append(got, h.Symbol)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("hits %v, want %q", got, tc.want)
			}
		})
	}

	r := mockResolver(t, map[string]mockdns.Zone{
		"refused.example.dbl.test.":         {A: []string{"127.0.0.1"}},
		"refused.example.multi.uribl.test.": {A: []string{"127.0.0.1"}},
	})
	c, err := New(testConfig(), r)
	if err != nil {
		t.Fatal(err)
	}
	if res := c.CheckDomains(context.Background(), []string{"refused.example"}); len(res.Hits) != 0 {
		t.Errorf("refused answers listed: %v", symbols(res))
	}
}
