package sieve

import (
	"context"
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

// TestRegexLeftmostLongest: :regex is POSIX extended (RFC 5228 regex draft,
// Pigeonhole's regcomp), whose match is the leftmost-longest one. RE2's
// default took the first alternative that matched, so "(foo|foobar)" against
// "foobar" set ${0} and ${1} to "foo" where Pigeonhole sets "foobar", and a
// script filing by ${1} filed elsewhere.
func TestRegexLeftmostLongest(t *testing.T) {
	for _, tc := range []struct{ re, subject, want string }{
		{"(foo|foobar)", "foobar baz", "fileinto:foobar-foobar"},
		{"(a|ab)(c|bcd)", "xabcd", "fileinto:abcd-a"},
		{"^(Re|Re: Fwd):", "Re: Fwd: news", "fileinto:Re: Fwd:-Re: Fwd"},
	} {
		src := `require ["regex","variables","fileinto"]; if header :regex "Subject" "` + tc.re + `" { fileinto "${0}-${1}"; }`
		msg := "Subject: " + tc.subject + "\r\n\r\nbody\r\n"
		res, err := mustCompile(t, src).Execute(context.Background(), &Env{Message: NewMessage([]byte(msg))})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(actSummary(res), " "); got != tc.want {
			t.Errorf("%s on %q: %q, want %q", tc.re, tc.subject, got, tc.want)
		}
	}
}
