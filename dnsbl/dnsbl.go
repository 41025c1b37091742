// Package dnsbl queries DNS block lists: IP lists with the client address
// (reversed octets, nibbles for IPv6) and domain lists (URIBL/DBL) with names
// found in a message. Answers map to symbols and weights by return code or bit
// mask. Every query has a timeout, a set of queries a budget and a cap, equal
// queries are made once, and answers are cached briefly.
//
// All DNS goes through Resolver; a *net.Resolver satisfies it.
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Resolver is the subset of *net.Resolver the lists need.
type Resolver interface {
	// LookupNetIP is asked for "ip4" only: lists answer A records, and
	// LookupHost's parallel AAAA query doubled every lookup and, on lists
	// that do not answer AAAA, waited for the timeout.
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// ErrTemporary marks a query that timed out or failed for a reason other than
// "not listed"; callers turn it into a temperror symbol, never a verdict.
var ErrTemporary = errors.New("dnsbl: temporary lookup failure")

// Hit is one listing.
type Hit struct {
	Zone   string   // zone as configured
	Item   string   // the address or domain looked up
	Query  string   // the DNS name queried
	Codes  []string // every A record returned
	Symbol string
	Score  float64
}

// Result of a set of queries.
type Result struct {
	Hits []Hit
	// Errors holds one wrapped ErrTemporary per query that did not answer
	// (timeout, SERVFAIL, budget exhausted, query cap reached).
	Errors []error
}

// Checker runs the queries. It is safe for concurrent use.
type Checker struct {
	cfg   Config
	res   Resolver
	now   func() time.Time
	cache *cache
}

// New builds a checker; cfg must be valid.
func New(cfg Config, r Resolver) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dnsbl: %w", err)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	c := &Checker{cfg: cfg, res: r, now: time.Now}
	if cfg.CacheTTL > 0 && cfg.CacheSize > 0 {
		c.cache = newCache(cfg.CacheSize)
	}
	return c, nil
}

// Zones returns how many zones of a kind are configured.
func (c *Checker) Zones(k Kind) int {
	n := 0
	for _, z := range c.cfg.Zones {
		if z.Kind == k {
			n++
		}
	}
	return n
}

type query struct {
	name string
	item string
	zone *Zone
}

// CheckIP looks the address up in every IP zone.
func (c *Checker) CheckIP(ctx context.Context, ip netip.Addr) Result {
	if !ip.IsValid() {
		return Result{}
	}
	ip = ip.Unmap()
	var qs []query
	for i := range c.cfg.Zones {
		z := &c.cfg.Zones[i]
		if z.Kind != KindIP || (ip.Is6() && !z.IPv6) {
			continue
		}
		qs = append(qs, query{name: ReverseIP(ip) + "." + zoneName(z.Zone), item: ip.String(), zone: z})
	}
	return c.run(ctx, qs)
}

// CheckDomains looks each domain up in every domain zone. Domains should
// already be reduced to what the lists carry (usually the registered domain);
// duplicates and invalid names are dropped.
func (c *Checker) CheckDomains(ctx context.Context, domains []string) Result {
	var qs []query
	seen := make(map[string]bool, len(domains))
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if seen[d] || !validDomain(d) {
			continue
		}
		seen[d] = true
		for i := range c.cfg.Zones {
			z := &c.cfg.Zones[i]
			if z.Kind == KindDomain {
				qs = append(qs, query{name: d + "." + zoneName(z.Zone), item: d, zone: z})
			}
		}
	}
	return c.run(ctx, qs)
}

func zoneName(z string) string { return strings.ToLower(strings.TrimSuffix(z, ".")) }

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			b := l[i]
			if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
				return false
			}
		}
	}
	return true
}

// ReverseIP returns the DNSBL query label for an address: "2.0.0.127" for
// 127.0.0.2, 32 dot-separated nibbles for IPv6.
func ReverseIP(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", a[3], a[2], a[1], a[0])
	}
	a := ip.As16()
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 63)
	for i := len(a) - 1; i >= 0; i-- {
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = append(b, hex[a[i]&0xf], '.', hex[a[i]>>4])
	}
	return string(b)
}

type answer struct {
	codes []string
	err   error
}

func (c *Checker) run(ctx context.Context, qs []query) Result {
	var res Result
	if len(qs) == 0 {
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Budget.D())
	defer cancel()

	// Dedup by query name: two zones entries never share a name (Validate),
	// but the same item can come twice through different callers' lists.
	uniq := make(map[string]int, len(qs))
	var list []query
	for _, q := range qs {
		if _, ok := uniq[q.name]; ok {
			continue
		}
		uniq[q.name] = len(list)
		list = append(list, q)
	}
	if len(list) > c.cfg.MaxQueries {
		for _, q := range list[c.cfg.MaxQueries:] {
			res.Errors = append(res.Errors, fmt.Errorf("%w: %s: per-message query cap %d reached", ErrTemporary, q.name, c.cfg.MaxQueries))
		}
		list = list[:c.cfg.MaxQueries]
	}

	answers := make([]answer, len(list))
	sem := make(chan struct{}, c.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, q := range list {
		if a, ok := c.cached(q.name); ok {
			answers[i] = a
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				answers[i] = answer{err: fmt.Errorf("%w: %s: budget exhausted", ErrTemporary, q.name)}
				return
			}
			defer func() { <-sem }()
			answers[i] = c.lookup(ctx, q.name)
		}()
	}
	wg.Wait()

	for i, q := range list {
		a := answers[i]
		if a.err != nil {
			res.Errors = append(res.Errors, a.err)
			continue
		}
		if len(a.codes) == 0 {
			continue
		}
		res.Hits = append(res.Hits, match(q, a.codes)...)
	}
	return res
}

func (c *Checker) cached(name string) (answer, bool) {
	if c.cache == nil {
		return answer{}, false
	}
	return c.cache.get(name, c.now())
}

func (c *Checker) lookup(ctx context.Context, name string) answer {
	qctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	defer cancel()
	addrs, err := c.res.LookupNetIP(qctx, "ip4", name+".")
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			a := answer{}
			if c.cache != nil {
				c.cache.put(name, a, c.now().Add(c.cfg.CacheTTL.D()))
			}
			return a
		}
		return answer{err: fmt.Errorf("%w: %s: %w", ErrTemporary, name, err)}
	}
	var codes []string
	for _, a := range addrs {
		a = a.Unmap()
		// Lists answer inside 127.0.0.0/8. Anything else is a wildcarding
		// resolver or a hijack; 127.255.255.0/24 is how Spamhaus and others
		// say "your resolver is blocked" — neither is a listing.
		if !a.Is4() || a.As4()[0] != 127 || (a.As4()[1] == 255 && a.As4()[2] == 255) {
			return answer{err: fmt.Errorf("%w: %s: answer %s is not a listing (blocked or wildcarding resolver?)", ErrTemporary, name, a)}
		}
		codes = append(codes, a.String())
	}
	a := answer{codes: codes}
	if c.cache != nil {
		c.cache.put(name, a, c.now().Add(c.cfg.CacheTTL.D()))
	}
	return a
}

// refused is what URIBL and SURBL answer for a refused query (public
// resolver, over quota) and hostkarma for a whitelisted address; RFC 5782
// lists never use it for a listing. Only an explicit Return code matches it:
// the zone's own symbol and bit masks (bit 0 is no list's) do not.
const refused = "127.0.0.1"

// match turns the codes of one answer into hits: every matching Return entry
// yields its symbol once; when none matches, the zone's own symbol applies to
// any code but refused.
func match(q query, codes []string) []Hit {
	var hits []Hit
	seen := map[string]bool{}
	listed := false
	for _, code := range codes {
		listed = listed || code != refused
	}
	for _, r := range q.zone.Returns {
		for _, code := range codes {
			ok := false
			if r.Code != "" {
				ok = code == r.Code
			} else if a, err := netip.ParseAddr(code); err == nil && code != refused {
				ok = a.As4()[3]&r.Bitmask != 0
			}
			if ok && !seen[r.Symbol] {
				seen[r.Symbol] = true
				hits = append(hits, Hit{Zone: q.zone.Zone, Item: q.item, Query: q.name, Codes: codes, Symbol: r.Symbol, Score: r.Score})
			}
		}
	}
	if len(hits) == 0 && listed && q.zone.Symbol != "" {
		hits = append(hits, Hit{Zone: q.zone.Zone, Item: q.item, Query: q.name, Codes: codes, Symbol: q.zone.Symbol, Score: q.zone.Score})
	}
	return hits
}
