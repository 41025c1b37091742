package authd

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dovetail-mail/dovetail/directory"
)

// grant is what a successful login answers with: the canonical user for OK's
// user=, and the networks the account may log in from.
type grant struct {
	user string
	nets string // allow_nets; "" = anywhere
}

// grantFor builds the grant of a user the directory authenticated. The
// passdb extra fields allow_nets and allow_real_nets (Dovecot's, in a users
// file or mapped from LDAP) restrict where the account may log in from; a
// migrated restriction must keep applying, so both are honoured (Postfix sends
// only rip=, the address of the SMTP client, which is both here).
func grantFor(login string, u *directory.User) grant {
	g := grant{user: u.Login}
	if g.user == "" {
		g.user = login
	}
	// Several fields must all admit the client: each value becomes one
	// ";"-separated group.
	var nets []string
	for _, k := range []string{"allow_nets", "allow_real_nets"} {
		nets = append(nets, u.Attrs[k]...)
	}
	g.nets = strings.Join(nets, ";")
	if len(nets) > 0 && g.nets == "" {
		g.nets = ";" // present but empty: nowhere
	}
	return g
}

// checkNets reports whether a client at rip (as the AUTH request's rip=; ""
// when not given) may log in under nets, grant.nets: every ";"-group must list
// the address, as an address or a CIDR network, or "local" for a request
// without an address (Dovecot's allow_nets syntax, entries separated by
// commas or blanks). A malformed entry matches nothing (logged with the
// failure), so a typo narrows the account instead of opening it.
func checkNets(nets, rip string) error {
	var ip netip.Addr
	if rip != "" {
		a, err := netip.ParseAddr(rip)
		if err != nil {
			return fmt.Errorf("allow_nets check failed: remote address %q unparsable", rip)
		}
		// A link-local client may come with its zone (fe80::1%eth0); the
		// zone names an interface, not part of the address, and netip never
		// finds a zoned address inside a prefix (Dovecot compares the bits).
		ip = a.Unmap().WithZone("")
	}
	for _, group := range strings.Split(nets, ";") {
		if !inGroup(group, ip) {
			if rip == "" {
				return fmt.Errorf("allow_nets check failed: remote address not known, allowed: %s", group)
			}
			return fmt.Errorf("allow_nets check failed: %s is not in %s", rip, group)
		}
	}
	return nil
}

func inGroup(group string, ip netip.Addr) bool {
	for _, e := range strings.FieldsFunc(group, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		switch {
		case e == "local":
			if !ip.IsValid() {
				return true
			}
		case !ip.IsValid():
		case strings.Contains(e, "/"):
			if p, err := netip.ParsePrefix(e); err == nil && p.Masked().Contains(ip) {
				return true
			}
		default:
			if a, err := netip.ParseAddr(e); err == nil && a.Unmap().WithZone("") == ip {
				return true
			}
		}
	}
	return false
}
