package milter

import (
	"net"
	"testing"

	"github.com/foxcpp/go-mockdns"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/authcheck"
)

// spammyBody hits the test rule below.
const spammyBody = "CLICK HERE to claim your FREE prize now!!! Limited offer, viagra and casino bonus.\r\n"

// integrationScorer is the real engine with its default ruleset (GTUBE
// included) plus one admin rule, the way a site adds its own: it makes the
// "spammy" message cross the add-header threshold without Bayes training. The
// SPF/DKIM/DMARC check runs against a mock DNS zone: auth.example allows
// 127.0.0.1, forged.example does not and publishes p=reject.
func integrationScorer(t *testing.T) Scorer {
	t.Helper()
	srv, err := mockdns.NewServerWithLogger(map[string]mockdns.Zone{
		"auth.example.":                {TXT: []string{"v=spf1 ip4:127.0.0.1 -all"}},
		"_dmarc.auth.example.":         {TXT: []string{"v=DMARC1; p=reject"}},
		"sel._domainkey.auth.example.": {TXT: []string{testDKIMRecord()}},
		"forged.example.":              {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}},
		"_dmarc.forged.example.":       {TXT: []string{"v=DMARC1; p=reject"}},
	}, quietDNS{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r := &net.Resolver{PreferGo: true}
	srv.PatchNet(r)
	ac, err := authcheck.New(authcheck.DefaultConfig(), r)
	if err != nil {
		t.Fatal(err)
	}
	cfg := spam.DefaultConfig()
	cfg.Bayes.Enabled = false
	// Pinned so the ruleset growing cannot turn "spammy" into a reject:
	// add header at 6, reject at 500 (GTUBE scores 1000).
	addHeader, reject := 6.0, 500.0
	cfg.Actions = spam.Thresholds{AddHeader: &addHeader, Reject: &reject}
	e, err := spam.New(cfg, spam.WithChecks(ac), spam.WithRuleText("local.cf", "body LOCAL_PHARMA_CASINO /viagra.{1,40}casino/i\nscore LOCAL_PHARMA_CASINO 8.0\ndescribe LOCAL_PHARMA_CASINO Pharmacy and casino spam\n"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type quietDNS struct{}

func (quietDNS) Printf(string, ...any) {}
