package rules

import (
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// prefilter is a set of lower-case literals at least one of which must occur
// in any text the regex matches. Most spam patterns are alternations of
// phrases: checking them with strings.Contains over the lower-cased text once
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
		// Lower-cased even without (?i): the text is lower-cased too, so this
		// only loses selectivity, never a match.
		s := strings.ToLower(string(re.Rune))
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

// mayMatch reports whether lowerText (lower-cased) contains one of the literals.
func (p prefilter) mayMatch(lowerText string) bool {
	for _, l := range p {
		if strings.Contains(lowerText, l) {
			return true
		}
	}
	return false
}
