package authcheck

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/foxcpp/go-mockdns"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// searchListResolver behaves as Go's resolver does under a resolv.conf with
// "search corp.example" (net.dnsConfig.nameList): an unrooted name whose
// lookup fails is asked again with the search domain appended, and the last
// answer is the one reported. A rooted name is asked once.
type searchListResolver struct{ *net.Resolver }

func (s searchListResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := s.Resolver.LookupTXT(ctx, name)
	if err != nil && !strings.HasSuffix(name, ".") {
		v, err = s.Resolver.LookupTXT(ctx, name+".corp.example")
	}
	return v, err
}

// The names SPF and DMARC look up are absolute: the receiving host's search
// domain must not answer for them.
func TestLookupsIgnoreSearchDomain(t *testing.T) {
	zone := map[string]mockdns.Zone{
		// The receiving site's own hardening: no mail from any of its names.
		"nospf.example.corp.example.": {TXT: []string{"v=spf1 -all"}},
		"_dmarc.bank.example.":        {Err: errors.New("servfail")},
		"bank.example.":               {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}},
	}
	c, err := New(DefaultConfig(), searchListResolver{mockResolver(t, zone)})
	if err != nil {
		t.Fatal(err)
	}
	check := func(from, mailFrom string) string {
		t.Helper()
		msg := message.Parse([]byte(rawMsg(from, "x\r\n")), message.DefaultLimits())
		syms, err := c.Check(context.Background(), &spam.Input{ClientIP: badIP, MailFrom: mailFrom, Helo: "mx.sender.example"}, msg)
		if err != nil {
			t.Fatal(err)
		}
		return names(syms)
	}
	// A domain without SPF is SPF_NONE, not the search domain's -all.
	if got := check("a@nospf.example", "a@nospf.example"); !strings.Contains(got, "SPF_NONE") {
		t.Errorf("sender without SPF: %s, want SPF_NONE", got)
	}
	// The bank's DMARC record could not be fetched: a temperror, not
	// "no policy" from the search domain's NXDOMAIN.
	if got := check("ceo@bank.example", "ceo@bank.example"); !strings.Contains(got, "DMARC_TEMPERROR") {
		t.Errorf("DMARC lookup SERVFAIL: %s, want DMARC_TEMPERROR", got)
	}
}
