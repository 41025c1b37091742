package policyd

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// patternSet matches a string against a list of /regex/ entries (Perl-style,
// case-insensitive, as postgrey reads its whitelists): it reports whether any
// entry matches.
//
// One alternation of every entry costs an NFA run over a large program on every
// request (with the Debian whitelist_clients, a third of the daemon's CPU). Most
// entries end in a literal anchored at the end of the text ("\.rr\.com$"), so
// for an ASCII subject the set first narrows the candidates to entries whose
// literal tail the subject ends with, and runs only those entries' own small
// expressions. The literal tail is a necessary condition for a match, so the
// answer is exactly the alternation's; subjects with non-ASCII bytes (where
// case folding reaches beyond ASCII) use the alternation itself.
type patternSet struct {
	all *regexp.Regexp // every entry; nil when the set is empty
	// byLabel holds the entries whose literal tail contains a dot, keyed by the
	// text after the tail's last dot: a matching subject's last label.
	byLabel map[string][]tailPattern
	tails   []tailPattern  // entries with a literal tail that has no dot
	rest    *regexp.Regexp // entries without a literal tail; nil if none
}

// tailPattern is one entry and the lower-cased literal that every string it
// matches ends with.
type tailPattern struct {
	tail string
	re   *regexp.Regexp
}

// newPatternSet compiles pats; an invalid entry is an error naming it.
func newPatternSet(pats []string) (*patternSet, error) {
	if len(pats) == 0 {
		return nil, nil
	}
	ps := &patternSet{byLabel: map[string][]tailPattern{}}
	var rest []string
	for _, p := range pats {
		re, err := regexp.Compile("(?i)(?:" + p + ")")
		if err != nil {
			return nil, fmt.Errorf("pattern /%s/: %w", p, err)
		}
		tail := literalTail("(?i)(?:" + p + ")")
		if tail == "" {
			rest = append(rest, p)
			continue
		}
		tp := tailPattern{tail: tail, re: re}
		if i := strings.LastIndexByte(tail, '.'); i >= 0 {
			ps.byLabel[tail[i+1:]] = append(ps.byLabel[tail[i+1:]], tp)
		} else {
			ps.tails = append(ps.tails, tp)
		}
	}
	var err error
	if ps.all, err = compileAlternation(pats); err != nil {
		return nil, err
	}
	if ps.rest, err = compileAlternation(rest); err != nil {
		return nil, err
	}
	return ps, nil
}

// match reports whether any entry matches s.
func (ps *patternSet) match(s string) bool {
	if ps == nil {
		return false
	}
	if !isASCII(s) {
		return ps.all.MatchString(s)
	}
	low := strings.ToLower(s) // ASCII in, ASCII out; no copy when already lower case
	label := low[strings.LastIndexByte(low, '.')+1:]
	for _, tp := range ps.byLabel[label] {
		if strings.HasSuffix(low, tp.tail) && tp.re.MatchString(s) {
			return true
		}
	}
	for _, tp := range ps.tails {
		if strings.HasSuffix(low, tp.tail) && tp.re.MatchString(s) {
			return true
		}
	}
	return ps.rest != nil && ps.rest.MatchString(s)
}

// literalTail returns the ASCII literal, lower-cased, that every match of the
// expression ends with when the expression is a concatenation ending in
// literal text and an end-of-text anchor ("...\.example\.com$"); "" otherwise.
func literalTail(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[len(re.Sub)-1].Op != syntax.OpEndText {
		return ""
	}
	var tail []byte // reversed
	for i := len(re.Sub) - 2; i >= 0; i-- {
		sub := re.Sub[i]
		if sub.Op != syntax.OpLiteral {
			break
		}
		for j := len(sub.Rune) - 1; j >= 0; j-- {
			r := sub.Rune[j]
			if r >= 0x80 {
				return reverseLower(tail)
			}
			tail = append(tail, byte(r))
		}
	}
	return reverseLower(tail)
}

func reverseLower(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[len(b)-1-i] = c
	}
	return string(out)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// compileAlternation compiles patterns, each already checked on its own by
// newPatternSet, into one case-insensitive alternation; nil when there are none.
func compileAlternation(pats []string) (*regexp.Regexp, error) {
	if len(pats) == 0 {
		return nil, nil
	}
	return regexp.Compile("(?i)(?:" + strings.Join(pats, ")|(?:") + ")")
}
