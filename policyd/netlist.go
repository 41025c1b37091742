package policyd

import (
	"fmt"
	"net/netip"
	"strings"
)

// parsePrefix reads "192.0.2.0/24", "2001:db8::/32" or a bare address (a host
// prefix). Host bits set in a prefix are an error: "192.0.2.1/24" is almost
// always a typo for a host or for the network.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or network", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}

// netList is a list of networks; lists are short (tens of entries), so a linear
// scan beats anything cleverer.
type netList []netip.Prefix

func newNetList(ss []string) (netList, error) {
	out := make(netList, 0, len(ss))
	for _, s := range ss {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (l netList) contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range l {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
