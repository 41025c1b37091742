package authcheck

import (
	"context"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/dovetail-mail/dovetail/dnsbl"
	"github.com/dovetail-mail/dovetail/spam"
)

// ListCheck is the spam.Check for DNS block lists: the client address in IP
// zones (RBL) and the registered domains of the message's URIs in domain zones
// (URIBL/DBL).
type ListCheck struct {
	c *dnsbl.Checker
}

var _ spam.Check = (*ListCheck)(nil)

// NewListCheck wraps a dnsbl.Checker; r nil means net.DefaultResolver.
func NewListCheck(cfg dnsbl.Config, r dnsbl.Resolver) (*ListCheck, error) {
	c, err := dnsbl.New(cfg, r)
	if err != nil {
		return nil, err
	}
	return &ListCheck{c: c}, nil
}

// Name implements spam.Check.
func (l *ListCheck) Name() string { return "DNSBL" }

// Check implements spam.Check. Authenticated clients and private, loopback
// and link-local addresses are not looked up: lists do not carry them and the
// query would leak nothing useful.
func (l *ListCheck) Check(ctx context.Context, in *spam.Input, msg *spam.Message) ([]spam.Symbol, error) {
	var out []spam.Symbol
	if ip, ok := netip.AddrFromSlice(in.ClientIP); ok && in.AuthUser == "" && l.c.Zones(dnsbl.KindIP) > 0 {
		ip = ip.Unmap()
		if !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
			out = append(out, toSymbols(l.c.CheckIP(ctx, ip), "RBL_TEMPERROR")...)
		}
	}
	if msg != nil && l.c.Zones(dnsbl.KindDomain) > 0 {
		out = append(out, toSymbols(l.c.CheckDomains(ctx, URIDomains(msg)), "URIBL_TEMPERROR")...)
	}
	return out, nil
}

// URIDomains returns the registered domains (public suffix + 1) of the
// message's URI hosts, as A-labels, deduplicated, in order of appearance.
// IP-literal hosts are skipped.
func URIDomains(msg *spam.Message) []string {
	seen := map[string]bool{}
	var out []string
	for _, u := range msg.URIs {
		h := strings.TrimSuffix(strings.ToLower(u.Host), ".")
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			continue
		}
		// Lists carry A-labels, and a browser turns a Unicode host (or one
		// written with an ideographic full stop) into one: without this a
		// link written so would never be looked up. Names IDNA refuses
		// (underscores) stay as they are.
		if a, err := idna.Lookup.ToASCII(h); err == nil {
			h = strings.TrimSuffix(a, ".")
		}
		d, err := publicsuffix.EffectiveTLDPlusOne(h)
		if err != nil || seen["="+d] {
			continue
		}
		seen["="+d] = true
		out = append(out, d)
	}
	return out
}

// toSymbols merges hits per symbol (options: the listed items) and reports
// unanswered queries as one temperror symbol.
func toSymbols(r dnsbl.Result, tempName string) []spam.Symbol {
	var out []spam.Symbol
	idx := map[string]int{}
	for _, h := range r.Hits {
		if i, ok := idx[h.Symbol]; ok {
			out[i].Options = append(out[i].Options, h.Item)
			continue
		}
		idx[h.Symbol] = len(out)
		out = append(out, spam.Symbol{
			Name: h.Symbol, Score: h.Score,
			Description: "listed in " + h.Zone + " (" + strings.Join(h.Codes, ",") + ")",
			Options:     []string{h.Item},
		})
	}
	if len(r.Errors) > 0 {
		out = append(out, spam.Symbol{Name: tempName, Description: r.Errors[0].Error()})
	}
	return out
}
