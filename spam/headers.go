package spam

import (
	"fmt"
	"strings"
)

// HeaderOptions tune HeaderEdits.
type HeaderOptions struct {
	// Hostname is named in X-Spam-Checker-Version ("" omits the header).
	Hostname string
	// Version is the checker version string (default "dovetail").
	Version string
}

// HeaderEdits returns the edits that make a scanned message carry
// SpamAssassin-compatible headers, so existing Sieve scripts (`header :contains
// "X-Spam-Flag" "YES"`, spamtest) keep working:
//
//   - remove: the names of every X-Spam-* field already in msg (spoof protection:
//     strip all occurrences before adding ours);
//   - add: X-Spam-Flag (spam only), X-Spam-Score, X-Spam-Level (one '*' per whole
//     point, at most 50), X-Spam-Status ("Yes, score=7.3 required=6.0 tests=A,B
//     autolearn=no version=dovetail"), folded at 78 columns, and
//     X-Spam-Checker-Version when a hostname is given.
//
// msg may be nil (nothing to remove).
func HeaderEdits(v Verdict, msg *Message, opts HeaderOptions) (remove []string, add []Header) {
	if msg != nil {
		seen := map[string]bool{}
		for _, f := range msg.Header {
			if len(f.Name) >= 7 && strings.EqualFold(f.Name[:7], "X-Spam-") && !seen[strings.ToLower(f.Name)] {
				seen[strings.ToLower(f.Name)] = true
				remove = append(remove, f.Name)
			}
		}
	}
	version := opts.Version
	if version == "" {
		version = "dovetail"
	}
	if opts.Hostname != "" {
		add = append(add, Header{"X-Spam-Checker-Version", fmt.Sprintf("%s on %s", version, opts.Hostname)})
	}
	if v.IsSpam {
		add = append(add, Header{"X-Spam-Flag", "YES"})
	}
	add = append(add, Header{"X-Spam-Score", fmt.Sprintf("%.1f", v.Score)})
	stars := int(v.Score)
	stars = max(0, min(stars, 50))
	add = append(add, Header{"X-Spam-Level", strings.Repeat("*", stars)})
	add = append(add, Header{"X-Spam-Status", StatusValue(v, version)})
	return remove, add
}

// StatusValue formats the X-Spam-Status value, folded for a field name of
// "X-Spam-Status: " (15 columns).
func StatusValue(v Verdict, version string) string {
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
	words := []string{
		fmt.Sprintf("%s, score=%.1f", yes, v.Score),
		fmt.Sprintf("required=%.1f", v.Required),
	}
	// The test list folds at commas, as SpamAssassin does.
	words = append(words, splitTests("tests="+tests)...)
	words = append(words, "autolearn="+autolearn, "version="+version)
	return fold(words, len("X-Spam-Status: "))
}

// splitTests breaks "tests=A,B,C" into pieces that each end at a comma, so
// folding can happen between tests.
func splitTests(s string) []string {
	var out []string
	for len(s) > 60 {
		i := strings.LastIndexByte(s[:60], ',')
		if i <= 0 {
			break
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return append(out, s)
}

// fold joins words with spaces, breaking lines before 78 columns with
// CRLF+TAB. A piece ending in ',' is joined without a space.
func fold(words []string, col int) string {
	var b strings.Builder
	for i, w := range words {
		sep := " "
		if i == 0 {
			sep = ""
		} else if strings.HasSuffix(words[i-1], ",") {
			sep = ""
		}
		if i > 0 && col+len(sep)+len(w) > 78 {
			b.WriteString("\r\n\t")
			col = 8
			sep = ""
		}
		b.WriteString(sep)
		b.WriteString(w)
		col += len(sep) + len(w)
	}
	return b.String()
}
