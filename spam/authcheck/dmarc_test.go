package authcheck

import (
	"strings"
	"testing"

	"github.com/foxcpp/go-mockdns"

	"github.com/dovetail-mail/dovetail/spam"
)

// Policy discovery as RFC 7489 §6.3 and §6.6.3 describe it: literal tag values
// are case-insensitive (RFC 5234 §2.3), a broken optional tag does not void
// the policy, and several DMARC records mean no DMARC at all.
func TestDMARCRecordParsing(t *testing.T) {
	f := &fixture{res: mockResolver(t, map[string]mockdns.Zone{
		"_dmarc.upper.example.":   {TXT: []string{"v=DMARC1; P=Reject; ADKIM=S"}},
		"_dmarc.badtag.example.":  {TXT: []string{"v=DMARC1; p=reject; rf=iodef; ri=1d; fo=2; pct=100%; rua=mailto:d@badtag.example"}},
		"_dmarc.badsp.example.":   {TXT: []string{"v=DMARC1; p=quarantine; sp=block"}},
		"_dmarc.junk.example.":    {TXT: []string{"v=DMARC1; p=reject; garbage; ;"}},
		"_dmarc.two.example.":     {TXT: []string{"v=DMARC1; p=reject", "v=DMARC1; p=none"}},
		"_dmarc.other.example.":   {TXT: []string{"google-site-verification=abc", "v=DMARC1; p=quarantine"}},
		"_dmarc.wsp.example.":     {TXT: []string{"v = DMARC1; p = reject"}},
		"_dmarc.nop.example.":     {TXT: []string{"v=DMARC1; p=maybe"}},
		"_dmarc.version.example.": {TXT: []string{"v=DMARC2; p=reject"}},
	})}
	c := f.checker(t)
	for _, tc := range []struct{ domain, want string }{
		{"upper.example", "DMARC_REJECT"},
		{"badtag.example", "DMARC_REJECT"},
		{"sub.badsp.example", "DMARC_PERMERROR"}, // an invalid sp voids the record
		{"junk.example", "DMARC_REJECT"},
		{"two.example", "DMARC_NONE"},
		{"sub.two.example", "DMARC_NONE"}, // the org record is as void
		{"other.example", "DMARC_QUARANTINE"},
		{"wsp.example", "DMARC_REJECT"},
		{"nop.example", "DMARC_PERMERROR"},
		{"version.example", "DMARC_NONE"},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			raw := "From: <ceo@" + tc.domain + ">\r\nSubject: x\r\n\r\nbody\r\n"
			syms := check(c, &spam.Input{ClientIP: badIP, MailFrom: "x@elsewhere.example", Helo: "mx"}, raw)
			got := ""
			for _, s := range syms {
				if strings.HasPrefix(s.Name, "DMARC_") {
					got = s.Name
				}
			}
			if got != tc.want {
				t.Errorf("%s: got %s, want %s (%v)", tc.domain, got, tc.want, syms)
			}
		})
	}
}
