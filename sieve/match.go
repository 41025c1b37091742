package sieve

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

type comparator int

const (
	cmpOctet comparator = iota
	cmpASCIICase
	cmpUnicodeCase
	cmpNumeric
)

var comparatorNames = map[string]comparator{
	"i;octet":           cmpOctet,
	"i;ascii-casemap":   cmpASCIICase,
	"i;unicode-casemap": cmpUnicodeCase,
	"i;ascii-numeric":   cmpNumeric,
}

type matchKind int

const (
	mIs matchKind = iota
	mContains
	mMatches
	mRegex
	mValue
	mCount
)

type relOp int

const (
	relGT relOp = iota
	relGE
	relLT
	relLE
	relEQ
	relNE
)

var relOps = map[string]relOp{"gt": relGT, "ge": relGE, "lt": relLT, "le": relLE, "eq": relEQ, "ne": relNE}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func unicodeFold(s string) string {
	return strings.ToLower(strings.ToUpper(s))
}

// numeric value for i;ascii-numeric: ok=false means +infinity.
func numericValue(s string) (string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return "", false
	}
	d := strings.TrimLeft(s[:i], "0")
	return d, true
}

// compare returns -1, 0, 1 for ordering under the comparator.
func (c comparator) compare(a, b string) int {
	switch c {
	case cmpNumeric:
		da, oka := numericValue(a)
		db, okb := numericValue(b)
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return 1
		case !okb:
			return -1
		}
		if len(da) != len(db) {
			if len(da) < len(db) {
				return -1
			}
			return 1
		}
		return strings.Compare(da, db)
	case cmpASCIICase:
		return strings.Compare(asciiLower(a), asciiLower(b))
	case cmpUnicodeCase:
		return strings.Compare(unicodeFold(a), unicodeFold(b))
	}
	return strings.Compare(a, b)
}

func (c comparator) equal(a, b string) bool {
	switch c {
	case cmpOctet:
		return a == b
	case cmpASCIICase:
		if len(a) != len(b) {
			return false
		}
		for i := 0; i < len(a); i++ {
			x, y := a[i], b[i]
			if x >= 'A' && x <= 'Z' {
				x += 32
			}
			if y >= 'A' && y <= 'Z' {
				y += 32
			}
			if x != y {
				return false
			}
		}
		return true
	case cmpUnicodeCase:
		return strings.EqualFold(a, b) || unicodeFold(a) == unicodeFold(b)
	}
	return c.compare(a, b) == 0
}

func (c comparator) contains(v, k string) bool {
	switch c {
	case cmpOctet:
		return strings.Contains(v, k)
	case cmpASCIICase:
		return asciiContainsFold(v, k)
	case cmpUnicodeCase:
		return strings.Contains(unicodeFold(v), unicodeFold(k))
	}
	return false
}

func asciiContainsFold(v, k string) bool {
	if len(k) == 0 {
		return true
	}
	if len(k) > 32 {
		// Comparing a long key at every position is O(len(v)·len(k)) (a
		// megabyte key against a body: hours); strings.Index is linear.
		return strings.Contains(asciiLower(v), asciiLower(k))
	}
	n := len(v) - len(k)
	k0 := k[0]
	if k0 >= 'A' && k0 <= 'Z' {
		k0 += 32
	}
	for i := 0; i <= n; i++ {
		c := v[i]
		if c >= 'A' && c <= 'Z' {
			c += 32
		}
		if c != k0 {
			continue
		}
		if cmpASCIICase.equal(v[i:i+len(k)], k) {
			return true
		}
	}
	return false
}

func relHolds(op relOp, c int) bool {
	switch op {
	case relGT:
		return c > 0
	case relGE:
		return c >= 0
	case relLT:
		return c < 0
	case relLE:
		return c <= 0
	case relEQ:
		return c == 0
	case relNE:
		return c != 0
	}
	return false
}

// glob matching (RFC 5228 :matches).
type pe struct {
	kind byte // 'l' literal, '*', '?'
	lit  string
}

// tokenizeGlob splits a :matches pattern into literals and wildcards.
func tokenizeGlob(pat string) []pe {
	var elems []pe
	var lit strings.Builder
	for i := 0; i < len(pat); i++ {
		ch := pat[i]
		switch ch {
		case '\\':
			if i+1 < len(pat) {
				i++
				lit.WriteByte(pat[i])
			}
		case '*', '?':
			if lit.Len() > 0 {
				elems = append(elems, pe{kind: 'l', lit: lit.String()})
				lit.Reset()
			}
			elems = append(elems, pe{kind: ch})
		default:
			lit.WriteByte(ch)
		}
	}
	if lit.Len() > 0 {
		elems = append(elems, pe{kind: 'l', lit: lit.String()})
	}
	return elems
}

// globPat is a tokenized :matches key cut at its stars: segs[0] * segs[1] *
// ... * segs[K], each segment a run of literals and '?'.
type globPat struct {
	elems []pe
	segs  [][]pe
	cost  []int // units a segment compares at most
}

func newGlob(elems []pe) *globPat {
	g := &globPat{elems: elems, segs: [][]pe{nil}, cost: []int{0}}
	for _, e := range elems {
		last := len(g.segs) - 1
		switch e.kind {
		case '*':
			g.segs = append(g.segs, nil)
			g.cost = append(g.cost, 0)
		case '?':
			g.segs[last] = append(g.segs[last], e)
			g.cost[last]++
		default:
			g.segs[last] = append(g.segs[last], e)
			g.cost[last] += len(e.lit)
		}
	}
	return g
}

// globWork is how many units a match may compare between two looks at the
// execution deadline.
const globWork = 1 << 16

// globValue is a value as :matches sees it: bytes (i;octet, i;ascii-casemap)
// or runes (i;unicode-casemap).
type globValue interface {
	len() int
	// seg returns where segment i of g ends when it matches at p.
	seg(g *globPat, i, p int) (int, bool)
	// next returns where the unit ('?') at p ends.
	next(p int) int
	litLen(lit string) int
	sub(a, b int) string
}

// globFind matches g against v. Each star takes the shortest value that lets
// the segment after it match (what Pigeonhole captures, and what the former
// backtracking matcher found): since the next star can absorb anything, the
// earliest occurrence of a middle segment never loses a match, so every
// segment is looked for once, from where the previous one ended, and no
// choice is ever revisited. That is O(len(v)·len(pattern)) for any number of
// stars, where backtracking over the stars was exponential. r (nil in tests)
// has its deadline checked every globWork units; start and end (one entry
// per segment) receive where each segment matched.
func globFind[V globValue](g *globPat, v V, r *run, start, end []int) (bool, error) {
	n := v.len()
	work := 0
	try := func(i, p int) (int, bool, error) {
		if work += g.cost[i] + 1; work >= globWork && r != nil {
			work = 0
			if err := r.checkTime(); err != nil {
				return 0, false, err
			}
		}
		e, ok := v.seg(g, i, p)
		return e, ok, nil
	}
	e, ok, err := try(0, 0)
	if err != nil || !ok {
		return false, err
	}
	start[0], end[0] = 0, e
	if len(g.segs) == 1 {
		return e == n, nil
	}
	cur := e
	for i := 1; i < len(g.segs); i++ {
		last := i == len(g.segs)-1
		found := false
		for p := cur; p <= n; p++ {
			e, ok, err := try(i, p)
			if err != nil {
				return false, err
			}
			if ok && (!last || e == n) {
				start[i], end[i] = p, e
				cur = e
				found = true
				break
			}
		}
		if !found {
			return false, nil
		}
	}
	return true, nil
}

// globRun matches and, with want, returns ${0} and one value per wildcard in
// pattern order: a star captures what lies between the segments around it, a
// '?' the unit it matched.
func globRun[V globValue](g *globPat, v V, whole string, want bool, r *run) (bool, []string, error) {
	var buf [16]int
	start, end := buf[:8], buf[8:]
	if len(g.segs) > 8 {
		start, end = make([]int, len(g.segs)), make([]int, len(g.segs))
	}
	ok, err := globFind(g, v, r, start, end)
	if !ok || err != nil || !want {
		return ok, nil, err
	}
	caps := []string{whole}
	for i, seg := range g.segs {
		if i > 0 {
			caps = append(caps, v.sub(end[i-1], start[i]))
		}
		p := start[i]
		for _, e := range seg {
			if e.kind == '?' {
				q := v.next(p)
				caps = append(caps, v.sub(p, q))
				p = q
			} else {
				p += v.litLen(e.lit)
			}
		}
	}
	return true, caps, nil
}

func globMatch(c comparator, val, pat string, want bool, r *run) (bool, []string, error) {
	g := newGlob(tokenizeGlob(pat))
	if c == cmpUnicodeCase {
		return globRunes(val, g, want, r)
	}
	return globElems(c, val, g, want, r)
}

// byteValue: '?' is one octet under i;octet and one UTF-8 character
// otherwise; literals compare octet by octet, or ASCII case-insensitively.
type byteValue struct {
	s     string
	octet bool
}

func (v byteValue) len() int { return len(v.s) }

func (v byteValue) next(p int) int {
	if v.octet {
		return p + 1
	}
	_, sz := utf8.DecodeRuneInString(v.s[p:])
	return p + sz
}

func (v byteValue) litLen(lit string) int { return len(lit) }

func (v byteValue) sub(a, b int) string { return v.s[a:b] }

func (v byteValue) seg(g *globPat, i, p int) (int, bool) {
	for _, e := range g.segs[i] {
		if e.kind == '?' {
			if p >= len(v.s) {
				return 0, false
			}
			p = v.next(p)
			continue
		}
		if len(v.s)-p < len(e.lit) {
			return 0, false
		}
		if w := v.s[p : p+len(e.lit)]; v.octet && w != e.lit || !v.octet && !cmpASCIICase.equal(w, e.lit) {
			return 0, false
		}
		p += len(e.lit)
	}
	return p, true
}

// globElems matches bytewise (i;octet, i;ascii-casemap).
func globElems(c comparator, val string, g *globPat, want bool, r *run) (bool, []string, error) {
	// fast paths without captures
	if !want && len(g.elems) == 1 && g.elems[0].kind == 'l' {
		return c.equal(val, g.elems[0].lit), nil, nil
	}
	return globRun(g, byteValue{s: val, octet: c == cmpOctet}, val, want, r)
}

// runeValue is a value under i;unicode-casemap, with the pattern's literals
// as runes (lits[segment][element]).
type runeValue struct {
	v    []rune
	lits [][][]rune
}

func (v runeValue) len() int { return len(v.v) }

func (v runeValue) next(p int) int { return p + 1 }

func (v runeValue) litLen(lit string) int { return utf8.RuneCountInString(lit) }

func (v runeValue) sub(a, b int) string { return string(v.v[a:b]) }

func (v runeValue) seg(g *globPat, i, p int) (int, bool) {
	for k, e := range g.segs[i] {
		if e.kind == '?' {
			if p >= len(v.v) {
				return 0, false
			}
			p++
			continue
		}
		l := v.lits[i][k]
		if len(v.v)-p < len(l) {
			return 0, false
		}
		for x, c := range l {
			if a := v.v[p+x]; a != c && unicode.ToLower(a) != unicode.ToLower(c) && unicode.ToUpper(a) != unicode.ToUpper(c) {
				return 0, false
			}
		}
		p += len(l)
	}
	return p, true
}

// globRunes matches runewise under i;unicode-casemap.
func globRunes(val string, g *globPat, want bool, r *run) (bool, []string, error) {
	rv := runeValue{v: []rune(val), lits: make([][][]rune, len(g.segs))}
	for i, seg := range g.segs {
		rv.lits[i] = make([][]rune, len(seg))
		for k, e := range seg {
			if e.kind == 'l' {
				rv.lits[i][k] = []rune(e.lit)
			}
		}
	}
	return globRun(g, rv, val, want, r)
}

// matcher is a compiled match specification.
type matcher struct {
	cmp   comparator
	kind  matchKind
	rel   relOp
	keys  []strv
	re    []*compiledRegex // precompiled when keys are constant (regex)
	globs []*globPat       // pre-tokenized constant :matches keys
	setMV bool             // set match variables (variables extension active)
}

// matchValues runs the match over values; returns whether it matched.
func (m *matcher) match(r *run, values []string) (bool, error) {
	if m.kind == mCount {
		n := len(values)
		ns := strconv.Itoa(n)
		for i := range m.keys {
			k := r.expand(&m.keys[i])
			// The count is compared under the test's comparator (RFC 5231
			// section 4.2, Pigeonhole's mcht_count_match): numerically only
			// with i;ascii-numeric.
			if relHolds(m.rel, m.cmp.compare(ns, k)) {
				return true, nil
			}
		}
		return false, nil
	}
	for _, v := range values {
		for i := range m.keys {
			if err := r.step(); err != nil {
				return false, err
			}
			// step looks at the clock every 16 steps; against a body, 16
			// comparisons can already take longer than the whole limit.
			if len(v) > 1<<16 {
				if err := r.checkTime(); err != nil {
					return false, err
				}
			}
			k := r.expand(&m.keys[i])
			ok, err := m.one(r, v, k, i)
			if err != nil {
				return false, err
			}
			if ok {
				return true, nil
			}
		}
	}
	return false, nil
}

func (m *matcher) one(r *run, v, k string, ki int) (bool, error) {
	switch m.kind {
	case mIs:
		return m.cmp.equal(v, k), nil
	case mContains:
		return m.cmp.contains(v, k), nil
	case mValue:
		return relHolds(m.rel, m.cmp.compare(v, k)), nil
	case mMatches:
		var ok bool
		var caps []string
		var err error
		if m.globs != nil && ki >= 0 && m.globs[ki] != nil && m.cmp != cmpUnicodeCase {
			ok, caps, err = globElems(m.cmp, v, m.globs[ki], m.setMV, r)
		} else {
			ok, caps, err = globMatch(m.cmp, v, k, m.setMV, r)
		}
		if err != nil {
			return false, err
		}
		if ok && m.setMV {
			r.setMatch(caps)
		}
		return ok, nil
	case mRegex:
		var re *compiledRegex
		if m.re != nil && ki >= 0 && m.re[ki] != nil {
			re = m.re[ki]
		} else {
			if re = r.reCache[k]; re == nil {
				if err := r.checkTime(); err != nil {
					return false, err
				}
				var err error
				re, err = compileRegex(k, m.cmp, r.lim)
				if err != nil {
					// Pigeonhole: a warning, and the key does not match
					r.warn("invalid regular expression '%s' for regex match: %v", sanitize(k, 128), err)
					return false, nil
				}
				if r.reCache == nil {
					r.reCache = map[string]*compiledRegex{}
				}
				if len(r.reCache) < 64 {
					r.reCache[k] = re
				}
			}
		}
		if err := r.regexBudget(re, len(v), m.setMV); err != nil {
			return false, err
		}
		if !m.setMV {
			return re.MatchString(v), nil
		}
		idx := re.FindStringSubmatchIndex(v)
		if idx == nil {
			return false, nil
		}
		caps := make([]string, len(idx)/2)
		for i := range caps {
			if idx[2*i] >= 0 {
				caps[i] = v[idx[2*i]:idx[2*i+1]]
			}
		}
		r.setMatch(caps)
		return true, nil
	}
	return false, nil
}

// regexUnitsPerSecond is a conservative rate at which RE2 advances one
// instruction over one input byte (measured 6-12 ns for the slowest patterns).
const regexUnitsPerSecond = 250_000_000

// regexBudget refuses a match that could not finish in the time left. RE2 is
// linear, but in the product of input and program size (and, with
// submatches, capture slots): a 2 MB body against a few thousand
// instructions runs for most of a minute, and a running match cannot be
// interrupted. So the deadline is checked before every match, and a match
// whose worst case exceeds what is left is a runtime error up front.
func (r *run) regexBudget(re *compiledRegex, n int, submatch bool) error {
	if err := r.checkTime(); err != nil {
		return err
	}
	work := float64(n) * float64(re.insts)
	if submatch {
		work *= 1 + float64(re.NumSubexp()+1)/32
	}
	left := time.Until(r.deadline).Seconds()
	if work > left*regexUnitsPerSecond {
		return r.runtimeErr("regular expression match on a value too large (%d bytes) for the remaining CPU time", n)
	}
	return nil
}

// compiledRegex is a regex with its estimated program size.
type compiledRegex struct {
	*regexp.Regexp
	insts int
}

func compileRegex(k string, c comparator, lim Limits) (*compiledRegex, error) {
	if lim.MaxRegexLen > 0 && len(k) > lim.MaxRegexLen {
		return nil, errString("regular expression too long")
	}
	if c == cmpASCIICase || c == cmpUnicodeCase {
		k = "(?is)" + k
	} else {
		k = "(?s)" + k
	}
	// Sized before compiling: a short pattern of counted repetitions
	// (".{1000}" a few hundred times) compiles to millions of instructions,
	// seconds of work and tens of megabytes that a cached script keeps.
	parsed, err := syntax.Parse(k, syntax.Perl)
	if err != nil {
		return nil, err
	}
	n := progSize(parsed)
	if lim.MaxRegexSize > 0 && n > lim.MaxRegexSize {
		return nil, fmt.Errorf("regular expression too large (about %d compiled instructions, limit %d)", n, lim.MaxRegexSize)
	}
	// POSIX ERE: Go's RE2 is close enough and linear-time (no stalls).
	re, err := regexp.Compile(k)
	if err != nil {
		return nil, err
	}
	// POSIX (and so Pigeonhole's regcomp) picks the leftmost-longest match,
	// not the first alternative that matches: "(foo|foobar)" against
	// "foobar" sets ${0} and ${1} to "foobar", not "foo".
	re.Longest()
	return &compiledRegex{Regexp: re, insts: n}, nil
}

// progSize estimates (from above, saturating) the instructions RE2 compiles
// re into, without expanding counted repetitions the way compiling does.
func progSize(re *syntax.Regexp) int {
	const inf = 1 << 40
	add := func(a, b int) int { return min(a+b, inf) }
	switch re.Op {
	case syntax.OpLiteral:
		return max(len(re.Rune), 1)
	case syntax.OpCapture:
		return add(progSize(re.Sub[0]), 2)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		return add(progSize(re.Sub[0]), 1)
	case syntax.OpRepeat:
		n := re.Max
		if n < 0 {
			n = re.Min + 1
		}
		sub := progSize(re.Sub[0])
		if n > 0 && sub > inf/n {
			return inf
		}
		return add(sub*n, n)
	case syntax.OpConcat, syntax.OpAlternate:
		t := len(re.Sub)
		for _, s := range re.Sub {
			t = add(t, progSize(s))
		}
		return t
	}
	return 1
}

// sanitize shortens s for a message as Pigeonhole's str_sanitize does.
func sanitize(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return truncUTF8(s, n-3) + "..."
}

type errString string

func (e errString) Error() string { return string(e) }
