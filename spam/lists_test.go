package spam_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
)

// authSymbols stands in for authcheck: it reports the symbols it is given.
func authSymbols(syms ...spam.Symbol) spam.Check {
	return spam.CheckFunc{ID: "auth", Fn: func(context.Context, *spam.Input, *spam.Message) ([]spam.Symbol, error) {
		return syms, nil
	}}
}

func gtubeFrom(from string) string {
	return strings.Replace(gtube, "From: a@example.com", "From: "+from, 1)
}

// Allow entries for senders and domains name identities anyone can forge:
// they apply only when SPF/DKIM/DMARC authenticated them. Deny entries and
// networks need no authentication, and the From address is parsed, not
// guessed from the first '<'.
func TestListsNeedAuthenticatedFrom(t *testing.T) {
	cfg := spam.DefaultConfig()
	cfg.Allow.Senders = []string{"ceo@partner.example", "bounces@list.example"}
	cfg.Allow.Domains = []string{"friends.example"}
	cfg.Allow.Networks = []string{"192.0.2.0/24"}
	cfg.Deny.Domains = []string{"evil.example"}
	dmarcPass := func(d string) spam.Symbol {
		return spam.Symbol{Name: "DMARC_PASS", Options: []string{"header.from=" + d, "p=reject"}}
	}
	dkimValid := func(d string) spam.Symbol { return spam.Symbol{Name: "DKIM_VALID", Options: []string{"header.d=" + d}} }
	spfPass := func(s string) spam.Symbol {
		return spam.Symbol{Name: "SPF_PASS", Options: []string{"smtp.mailfrom=" + s}}
	}
	for _, tc := range []struct {
		name     string
		from     string
		mailFrom string
		ip       string
		auth     []spam.Symbol
		want     string // DENYLIST, ALLOWLIST or "" (scanned: GTUBE rejects)
	}{
		{"quoted allow address in the display name", `"<ceo@partner.example>" <spammer@evil.example>`, "", "", []spam.Symbol{dmarcPass("evil.example")}, "DENYLIST"},
		{"quoted allow address, no deny entry", `"<ceo@partner.example>" <spammer@other.example>`, "", "", []spam.Symbol{dmarcPass("other.example")}, ""},
		{"allowed From without authentication", "ceo@partner.example", "", "", nil, ""},
		{"allowed From, DMARC fails", "CEO <ceo@partner.example>", "", "", []spam.Symbol{{Name: "DMARC_REJECT", Options: []string{"header.from=partner.example"}}}, ""},
		{"allowed From, DMARC pass", "CEO <ceo@partner.example>", "", "", []spam.Symbol{dmarcPass("partner.example")}, "ALLOWLIST"},
		{"allowed domain, aligned DKIM", "x@news.friends.example", "", "", []spam.Symbol{dkimValid("friends.example")}, "ALLOWLIST"},
		{"allowed domain, DKIM of another domain", "x@friends.example", "", "", []spam.Symbol{dkimValid("evil2.example")}, ""},
		{"allowed domain, aligned SPF", "x@friends.example", "b@mail.friends.example", "", []spam.Symbol{spfPass("b@mail.friends.example")}, "ALLOWLIST"},
		{"allowed envelope sender, SPF pass", "x@other.example", "bounces@list.example", "", []spam.Symbol{spfPass("bounces@list.example")}, "ALLOWLIST"},
		{"allowed envelope sender, SPF fail", "x@other.example", "bounces@list.example", "", []spam.Symbol{{Name: "SPF_FAIL", Options: []string{"smtp.mailfrom=bounces@list.example"}}}, ""},
		{"unparsable From is not allowed", `"CEO" <ceo@partner.example> (x`, "", "", []spam.Symbol{dmarcPass("partner.example")}, ""},
		{"unparsable From is still denied", `"CEO" <ceo@evil.example> (x`, "", "", nil, "DENYLIST"},
		{"allow network needs nothing", "x@other.example", "", "192.0.2.7", nil, "ALLOWLIST"},
		{"deny beats an authenticated allow", "ceo@partner.example", "x@evil.example", "", []spam.Symbol{dmarcPass("partner.example")}, "DENYLIST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, cfg, spam.WithChecks(authSymbols(tc.auth...)))
			in := &spam.Input{Raw: strings.NewReader(gtubeFrom(tc.from)), MailFrom: tc.mailFrom}
			if tc.ip != "" {
				in.ClientIP = net.ParseIP(tc.ip)
			}
			v, err := e.Score(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, s := range v.Symbols {
				if s.Name == "DENYLIST" || s.Name == "ALLOWLIST" {
					got = s.Name
				}
			}
			if got != tc.want {
				t.Fatalf("got %q (score %v, reason %q, symbols %v), want %q", got, v.Score, v.Reason, v.Symbols, tc.want)
			}
			switch tc.want {
			case "ALLOWLIST":
				if v.Action != spam.NoAction || len(v.Symbols) != 1 || !strings.HasPrefix(v.Reason, "allow list: ") {
					t.Errorf("allow-listed GTUBE: %+v", v)
				}
			case "":
				if v.Action != spam.Reject {
					t.Errorf("GTUBE action %q", v.Action)
				}
			}
		})
	}
}
