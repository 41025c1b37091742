package sieve

import (
	"strings"
	"testing"
)

// TestCountUsesComparator: RFC 5231 section 4.2 (and Pigeonhole's
// mcht_count_match) compare the count with each key under the test's
// comparator; only i;ascii-numeric compares them as numbers. Under the
// default comparator "10" sorts before "9".
func TestCountUsesComparator(t *testing.T) {
	ten := `["a","b","c","d","e","f","g","h","i","j"]`
	for _, tc := range []struct {
		src     string
		discard bool
	}{
		{`require ["variables","relational"]; if string :count "gt" ` + ten + ` "9" { discard; }`, false},
		{`require ["variables","relational"]; if string :count "lt" ` + ten + ` "9" { discard; }`, true},
		{`require ["variables","relational","comparator-i;ascii-numeric"]; if string :count "gt" :comparator "i;ascii-numeric" ` + ten + ` "9" { discard; }`, true},
		{`require ["variables","relational","comparator-i;ascii-numeric"]; if string :count "lt" :comparator "i;ascii-numeric" ` + ten + ` "9" { discard; }`, false},
		{`require ["variables","relational"]; if string :count "eq" ` + ten + ` "10" { discard; }`, true},
	} {
		got := strings.Join(actSummary(execute(t, tc.src)), " ")
		if (got == "discard") != tc.discard {
			t.Errorf("%s: actions %q, want discard=%v", tc.src, got, tc.discard)
		}
	}
}
