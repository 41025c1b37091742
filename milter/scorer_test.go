package milter

import (
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
)

// spammyBody hits the test rule below.
const spammyBody = "CLICK HERE to claim your FREE prize now!!! Limited offer, viagra and casino bonus.\r\n"

// integrationScorer is the real engine with its default ruleset (GTUBE
// included) plus one admin rule, the way a site adds its own: it makes the
// "spammy" message cross the add-header threshold without Bayes training.
func integrationScorer(t *testing.T) Scorer {
	t.Helper()
	cfg := spam.DefaultConfig()
	cfg.Bayes.Enabled = false
	e, err := spam.New(cfg, spam.WithRuleText("local.cf", "body LOCAL_PHARMA_CASINO /viagra.{1,40}casino/i\nscore LOCAL_PHARMA_CASINO 8.0\ndescribe LOCAL_PHARMA_CASINO Pharmacy and casino spam\n"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}
