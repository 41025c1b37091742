package authd

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheckNets(t *testing.T) {
	for _, tc := range []struct {
		nets, rip string
		ok        bool
	}{
		{"192.0.2.0/24", "192.0.2.7", true},
		{"192.0.2.0/24", "198.51.100.1", false},
		{"192.0.2.0/24", "", false},
		{"local", "", true},
		{"local", "192.0.2.7", false},
		{"192.0.2.7, 2001:db8::/32", "2001:db8::1", true},
		{"192.0.2.7 10.0.0.0/8", "10.1.2.3", true},
		{"192.0.2.7", "::ffff:192.0.2.7", true},
		{"192.0.2.300", "192.0.2.3", false},                  // a typo matches nothing
		{"192.0.2.0/24;198.51.100.0/24", "192.0.2.7", false}, // allow_nets and allow_real_nets both apply
		{";", "192.0.2.7", false},                            // present but empty
		{"192.0.2.0/24", "not-an-ip", false},
		{"fe80::/10", "fe80::1%eth0", true}, // the zone is not part of the address
		{"fe80::1", "fe80::1%eth0", true},
		{"fe80::1%eth1", "fe80::1", true},
		{"2001:db8::/32", "fe80::1%eth0", false},
	} {
		if err := checkNets(tc.nets, tc.rip); (err == nil) != tc.ok {
			t.Errorf("checkNets(%q, %q) = %v, want ok %v", tc.nets, tc.rip, err, tc.ok)
		}
	}
}

// A users file's allow_nets (Dovecot's passdb extra field) keeps applying
// after a migration: a login from elsewhere fails, also when the password
// is in the cache from an allowed network.
func TestAllowNetsOverTheWire(t *testing.T) {
	d, _ := usersFileDir(t, "alice:{PLAIN}pw::::::allow_nets=192.0.2.0/24,2001:db8::/32\n"+
		"bob:{PLAIN}pw::::::allow_nets=198.51.100.0/24\n"+
		"carol:{PLAIN}pw::::::allow_nets=local\n"+
		"dave:{PLAIN}pw::::::allow_nets=192.0.2.300\n"+
		"erin:{PLAIN}pw\n")
	ts := start(t, testConfig(), d)
	c := dial(t, ts.addr)
	login := func(user, rip string) string {
		c.id++
		ripField := ""
		if rip != "" {
			ripField = "\trip=" + rip
		}
		c.send(fmt.Sprintf("AUTH\t%d\tPLAIN\tservice=smtp\tnologin\tno-penalty%s\tresp=%s\n", c.id, ripField, b64("\x00"+user+"\x00pw")))
		return c.line()
	}
	for _, tc := range []struct {
		user, rip string
		ok        bool
	}{
		{"alice", "192.0.2.7", true},
		{"alice", "192.0.2.7", true}, // from the cache
		{"alice", "203.0.113.5", false},
		{"alice", "2001:db8::25", true},
		{"bob", "192.0.2.7", false},
		{"bob", "198.51.100.9", true},
		{"bob", "192.0.2.7", false}, // the cached success does not widen it
		{"carol", "192.0.2.7", false},
		{"carol", "", true},
		{"dave", "192.0.2.3", false},
		{"erin", "203.0.113.5", true},
	} {
		l := login(tc.user, tc.rip)
		if got := strings.HasPrefix(l, "OK\t"); got != tc.ok {
			t.Errorf("%s from %q: %q, want ok %v", tc.user, tc.rip, l, tc.ok)
		}
	}
}
