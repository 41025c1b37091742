package milter

import (
	"fmt"
	"strings"

	"github.com/dovetail-mail/dovetail/spam"
)

// SpamHeaders renders a verdict as SpamAssassin's headers so existing Sieve
// scripts keep working: X-Spam-Flag: YES (spam only), X-Spam-Score,
// X-Spam-Level (one '*' per whole point, at most 50), X-Spam-Status.
func SpamHeaders(v spam.Verdict) []spam.Header {
	var hs []spam.Header
	if v.IsSpam {
		hs = append(hs, spam.Header{Name: "X-Spam-Flag", Value: "YES"})
	}
	stars := 0
	if v.Score > 0 {
		stars = min(int(v.Score), 50)
	}
	hs = append(hs,
		spam.Header{Name: "X-Spam-Score", Value: fmt.Sprintf("%.1f", v.Score)},
		spam.Header{Name: "X-Spam-Level", Value: strings.Repeat("*", stars)},
	)
	yes := "No"
	if v.IsSpam {
		yes = "Yes"
	}
	names := make([]string, 0, len(v.Symbols))
	for _, s := range v.Symbols {
		names = append(names, s.Name)
	}
	tests := strings.Join(names, ",")
	if tests == "" {
		tests = "none"
	}
	autolearn := v.Autolearn
	if autolearn == "" {
		autolearn = "no"
	}
	status := fmt.Sprintf("%s, score=%.1f required=%.1f tests=%s autolearn=%s", yes, v.Score, v.Required, tests, autolearn)
	hs = append(hs, spam.Header{Name: "X-Spam-Status", Value: fold(status, 78)})
	return hs
}

// fold breaks a long value at commas/spaces with CRLF+TAB.
func fold(v string, width int) string {
	if len(v) <= width {
		return v
	}
	var b strings.Builder
	line := 0
	for len(v) > 0 {
		i := strings.IndexAny(v, " ,")
		tok := v
		if i >= 0 {
			tok = v[:i+1]
		}
		if line > 0 && line+len(tok) > width {
			b.WriteString("\r\n\t")
			line = 1
		}
		b.WriteString(tok)
		line += len(tok)
		v = v[len(tok):]
	}
	return b.String()
}
