package spam_test

import (
	"context"
	"sort"
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
)

// TestRuleStats prints how often each rule hits ham and spam (-corpus -v):
// the check that a rule stays conservative.
func TestRuleStats(t *testing.T) {
	if !*corpusFlag {
		t.Skip()
	}
	msgs := loadCorpus(t, 0)
	e, _ := spam.New(spam.DefaultConfig())
	hits := map[string][2]int{}
	var n [2]int
	for _, m := range msgs {
		v, _ := e.Score(context.Background(), &spam.Input{Raw: bytesReader(m.data)})
		k := 0
		if m.spam {
			k = 1
		}
		n[k]++
		for _, s := range v.Symbols {
			h := hits[s.Name]
			h[k]++
			hits[s.Name] = h
		}
	}
	var names []string
	for k := range hits {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("%-22s ham %5.1f%%  spam %5.1f%%", k, 100*float64(hits[k][0])/float64(n[0]), 100*float64(hits[k][1])/float64(n[1]))
	}
}
