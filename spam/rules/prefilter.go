package rules

import (
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// prefilter is a set of case-folded literals at least one of which must occur
// in any text the regex matches. Most spam patterns are alternations of
// phrases: checking them with strings.Contains over the folded text once
// skips the regex engine for nearly every message (Go's regexp has no literal
// acceleration for case-insensitive alternations).
type prefilter []string

// minLiteral is the shortest literal worth filtering on.
const minLiteral = 3

// buildPrefilter returns the prefilter of pattern pat (already translated to
// RE2 syntax), or nil when none can be derived.
func buildPrefilter(pat string) prefilter {
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return nil
	}
	set := literals(re.Simplify(), 0)
	for _, l := range set {
		if len(l) < minLiteral {
			return nil
		}
	}
	return set
}

// literals returns the required-literal set of re (nil = unknown).
func literals(re *syntax.Regexp, depth int) []string {
	if depth > 50 {
		return nil
	}
	switch re.Op {
	case syntax.OpLiteral:
		// Folded even without (?i): the text is folded too, so this only
		// loses selectivity, never a match.
		s := foldCase(string(re.Rune))
		if !utf8.ValidString(s) {
			return nil
		}
		return []string{s}
	case syntax.OpCapture:
		return literals(re.Sub[0], depth+1)
	case syntax.OpPlus:
		return literals(re.Sub[0], depth+1)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return literals(re.Sub[0], depth+1)
		}
		return nil
	case syntax.OpConcat:
		// Best child: the one whose shortest literal is longest.
		var best []string
		bestLen := 0
		for _, sub := range re.Sub {
			set := literals(sub, depth+1)
			if set == nil {
				continue
			}
			m := shortest(set)
			if m > bestLen {
				best, bestLen = set, m
			}
		}
		return best
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			set := literals(sub, depth+1)
			if set == nil {
				return nil
			}
			all = append(all, set...)
		}
		if len(all) > 64 {
			return nil
		}
		return all
	}
	return nil
}

func shortest(set []string) int {
	m := -1
	for _, s := range set {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return max(m, 0)
}

// foldCase maps every rune of s to one representative of its Unicode
// simple-folding orbit, the equivalence RE2's (?i) matches by: "ſ" (long s)
// and "K" (Kelvin sign) become "s" and "k", "µ" and "μ" one rune. Plain
// strings.ToLower is not enough: it leaves "ſ" and "µ" alone, so a
// prefilter over lower-cased text skipped "caſino", which /casino/i matches.
// Folding never adds or removes a line break.
func foldCase(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.Map(foldRune, s)
		}
	}
	return strings.ToLower(s)
}

// foldRune returns the lower case of the smallest rune of r's folding orbit:
// one value for the whole orbit, and plain lower case for ASCII.
func foldRune(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return unicode.ToLower(least)
}

// mayMatch reports whether lowerText (folded by foldCase) contains one of the literals.
func (p prefilter) mayMatch(lowerText string) bool {
	for _, l := range p {
		if strings.Contains(lowerText, l) {
			return true
		}
	}
	return false
}
