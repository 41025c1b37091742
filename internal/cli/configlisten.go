package cli

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// checkListeners refuses two listeners of one `dovetail serve` on the same
// address (two daemons, lmtpd's also_listen, metrics.listen): each address
// passes on its own, and serve then stops at start with "bind: address already
// in use" ("socket is in use by another process" for a unix socket). Only the
// daemons listed in `daemons:` are compared. metrics.listen comes first, so a
// daemon put on its (usually default) address is reported at the daemon's line.
func (c *Config) checkListeners() error {
	type bound struct{ field, addr string }
	var ls []bound
	if c.Metrics.Listen != "" {
		ls = append(ls, bound{"metrics.listen", c.Metrics.Listen})
	}
	add := func(field string, l config.Listener) {
		if l.Address != "" {
			ls = append(ls, bound{field, l.Address})
		}
	}
	for _, d := range knownDaemons {
		if !slices.Contains(c.Daemons, d) {
			continue
		}
		switch d {
		case "authd":
			add("authd.listen.address", c.Authd.Listen)
		case "policyd":
			add("policyd.listen.address", c.Policyd.Listen)
		case "milter":
			add("milter.listen.address", c.Milter.Listen)
		case "lmtpd":
			add("lmtpd.listen.address", c.Lmtpd.Listen)
			add("lmtpd.also_listen.address", c.Lmtpd.AlsoListen)
		}
	}
	var errs []error
	for i, b := range ls {
		for _, a := range ls[:i] {
			if listenConflict(a.addr, b.addr) {
				errs = append(errs, config.Errorf(b.field,
					fmt.Sprintf("%s is already taken by %s (%s): serve would stop at start with \"address already in use\"", b.addr, a.field, a.addr),
					"give every daemon its own port or socket"))
				break
			}
		}
	}
	return config.Join(errs...)
}

// listenConflict reports whether listening on a and on b cannot both succeed:
// the same socket path, or the same TCP port on the same host or where one
// of them is a wildcard address covering the other.
func listenConflict(a, b string) bool {
	ua, ub := strings.HasPrefix(a, "unix:"), strings.HasPrefix(b, "unix:")
	if ua || ub {
		return ua && ub && filepath.Clean(strings.TrimPrefix(a, "unix:")) == filepath.Clean(strings.TrimPrefix(b, "unix:"))
	}
	ha, pa, errA := net.SplitHostPort(strings.TrimPrefix(a, "tcp:"))
	hb, pb, errB := net.SplitHostPort(strings.TrimPrefix(b, "tcp:"))
	if errA != nil || errB != nil {
		return false // reported by the listener's own check
	}
	na, errA := net.LookupPort("tcp", pa)
	nb, errB := net.LookupPort("tcp", pb)
	if errA != nil || errB != nil || na == 0 || na != nb { // port 0: the kernel picks one
		return false
	}
	if strings.EqualFold(ha, hb) {
		return true
	}
	return covers(ha, hb) || covers(hb, ha)
}

// covers reports whether listening on the wildcard host w takes the port on h
// as well: "" and "::" (dual-stack on Linux) every address, "0.0.0.0" every
// IPv4 address.
func covers(w, h string) bool {
	switch w {
	case "", "::":
		return true
	case "0.0.0.0":
		ip, err := netip.ParseAddr(h)
		return err == nil && ip.Unmap().Is4()
	}
	return false
}
