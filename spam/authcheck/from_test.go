package authcheck

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

func parseIP(s string) net.IP { return net.ParseIP(s) }

// The DMARC domain is the one the reader sees, or DMARC fails: an unparsable
// From is never mined for a domain (RFC 7489 §6.6.1).
func TestDMARCFromParsing(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t)
	// 192.0.2.1 is SPF-authorised for soft.example (p=none) and example.org
	// (p=reject).
	for _, tc := range []struct {
		name   string
		from   string // From lines, "\n"-separated for several
		want   string // DMARC symbol
		domain string // header.from
	}{
		{"attack: unterminated comment", `"PayPal" <ceo@example.org> (@soft.example`, "DMARC_BAD_FROM", ""},
		{"attack: quoted address in the name", `"<x@soft.example>" <ceo@example.org>`, "DMARC_REJECT", "example.org"},
		{"two mailboxes", "x@soft.example, ceo@example.org", "DMARC_BAD_FROM", ""},
		{"two From fields", "x@soft.example\nFrom: ceo@example.org", "DMARC_BAD_FROM", ""},
		{"address outside the brackets", "x@soft.example <ceo@example.org>", "DMARC_BAD_FROM", ""},
		{"two angle-addrs", "PayPal <ceo@example.org> <x@soft.example>", "DMARC_BAD_FROM", ""},
		{"no domain", "Someone <ceo>", "DMARC_BAD_FROM", ""},
		{"group without mailboxes", "undisclosed-recipients:;", "DMARC_BAD_FROM", ""},
		{"unknown charset in name", "=?x-bogus?q?Pay?= <x@soft.example>", "DMARC_PASS", "soft.example"},
		{"brackets in the name", "Shop [News] <x@soft.example>", "DMARC_PASS", "soft.example"},
		{"comma in the name", "Doe, John <x@soft.example>", "DMARC_PASS", "soft.example"},
		{"closed comment", "<x@soft.example> (@example.org)", "DMARC_PASS", "soft.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "From: " + strings.ReplaceAll(tc.from, "\n", "\r\n") + "\r\nSubject: x\r\n\r\nbody\r\n"
			syms := check(c, &spam.Input{ClientIP: goodIP, MailFrom: "x@soft.example", Helo: "mx"}, raw)
			var got spam.Symbol
			for _, s := range syms {
				if strings.HasPrefix(s.Name, "DMARC_") {
					got = s
				}
			}
			if got.Name != tc.want || !strings.Contains(strings.Join(got.Options, " "), "header.from="+tc.domain) {
				t.Fatalf("got %+v, want %s header.from=%s", got, tc.want, tc.domain)
			}
			if got.Name == "DMARC_BAD_FROM" {
				if got.Score <= 0 {
					t.Errorf("DMARC_BAD_FROM scores %v", got.Score)
				}
				if ar := AuthResults("mx.test", syms); !strings.Contains(ar, "dmarc=fail") {
					t.Errorf("Authentication-Results %q", ar)
				}
			}
		})
	}
}

func TestDMARCNoFrom(t *testing.T) {
	f := newFixture(t)
	msg := message.Parse([]byte("Subject: x\r\n\r\nbody\r\n"), message.DefaultLimits())
	defer msg.Close()
	syms, _ := f.checker(t).Check(context.Background(), &spam.Input{ClientIP: goodIP, MailFrom: "x@soft.example", Helo: "mx"}, msg)
	if got := names(syms); got != "DKIM_NONE,DMARC_PERMERROR,SPF_PASS" {
		t.Errorf("symbols %s", got)
	}
}
