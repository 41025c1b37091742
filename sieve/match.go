package sieve

import (
	"regexp"
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

// glob matching (RFC 5228 :matches) with non-greedy captures.
// Returns captures for each wildcard when caps != nil.
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

func globMatch(c comparator, val, pat string, want bool) (bool, []string) {
	if c == cmpUnicodeCase {
		return globRunes(val, pat, want)
	}
	return globElems(c, val, tokenizeGlob(pat), want)
}

func globElems(c comparator, val string, elems []pe, want bool) (bool, []string) {
	// fast paths without captures
	if !want && len(elems) == 1 && elems[0].kind == 'l' {
		return c.equal(val, elems[0].lit), nil
	}
	eq := func(a, b string) bool {
		if c == cmpOctet {
			return a == b
		}
		return cmpASCIICase.equal(a, b)
	}
	// backtracking over star positions (classic algorithm with per-star state)
	type starState struct {
		elem int // index of the star element
		vpos int // value position where its capture starts
		cap  int // current length
	}
	nw := 0
	for _, e := range elems {
		if e.kind != 'l' {
			nw++
		}
	}
	var caps []string
	var capBuf [16]int
	capStart := capBuf[:0:8]
	capEnd := capBuf[8:8:16]
	if nw > 8 {
		capStart = make([]int, 0, nw)
		capEnd = make([]int, 0, nw)
	}
	var starBuf [8]starState
	stars := starBuf[:0]
	ei, vi := 0, 0
	steps := 0
	for {
		steps++
		if steps > 1<<22 {
			return false, nil
		}
		if ei == len(elems) {
			if vi == len(val) {
				break
			}
			goto backtrack
		}
		switch e := elems[ei]; e.kind {
		case 'l':
			if len(val)-vi >= len(e.lit) && eq(val[vi:vi+len(e.lit)], e.lit) {
				vi += len(e.lit)
				ei++
				continue
			}
			goto backtrack
		case '?':
			if vi < len(val) {
				_, sz := utf8.DecodeRuneInString(val[vi:])
				if c == cmpOctet {
					sz = 1
				}
				capStart = append(capStart, vi)
				capEnd = append(capEnd, vi+sz)
				vi += sz
				ei++
				continue
			}
			goto backtrack
		case '*':
			stars = append(stars, starState{elem: ei, vpos: vi, cap: 0})
			capStart = append(capStart, vi)
			capEnd = append(capEnd, vi)
			ei++
			continue
		}
	backtrack:
		for {
			if len(stars) == 0 {
				return false, nil
			}
			s := &stars[len(stars)-1]
			if s.vpos+s.cap >= len(val) {
				stars = stars[:len(stars)-1]
				continue
			}
			s.cap++
			// reset captures to those before this star
			n := 0
			for k := 0; k < s.elem; k++ {
				if elems[k].kind != 'l' {
					n++
				}
			}
			capStart = capStart[:n]
			capEnd = capEnd[:n]
			capStart = append(capStart, s.vpos)
			capEnd = append(capEnd, s.vpos+s.cap)
			vi = s.vpos + s.cap
			ei = s.elem + 1
			break
		}
	}
	if want {
		caps = make([]string, 0, nw+1)
		caps = append(caps, val)
		for k := range capStart {
			caps = append(caps, val[capStart[k]:capEnd[k]])
		}
	}
	return true, caps
}

func globRunes(val, pat string, want bool) (bool, []string) {
	v := []rune(val)
	p := []rune(pat)
	type pe struct {
		kind rune
		lit  []rune
	}
	var elems []pe
	var lit []rune
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			if i+1 < len(p) {
				i++
				lit = append(lit, p[i])
			}
		case '*', '?':
			if len(lit) > 0 {
				elems = append(elems, pe{'l', lit})
				lit = nil
			}
			elems = append(elems, pe{kind: p[i]})
		default:
			lit = append(lit, p[i])
		}
	}
	if len(lit) > 0 {
		elems = append(elems, pe{'l', lit})
	}
	req := func(a, b rune) bool {
		return a == b || unicode.ToLower(a) == unicode.ToLower(b) || unicode.ToUpper(a) == unicode.ToUpper(b)
	}
	var caps [][2]int
	var rec func(ei, vi, depth int) bool
	steps := 0
	rec = func(ei, vi, depth int) bool {
		steps++
		if steps > 1<<20 {
			return false
		}
		if ei == len(elems) {
			return vi == len(v)
		}
		e := elems[ei]
		switch e.kind {
		case 'l':
			if len(v)-vi < len(e.lit) {
				return false
			}
			for k, r := range e.lit {
				if !req(v[vi+k], r) {
					return false
				}
			}
			return rec(ei+1, vi+len(e.lit), depth)
		case '?':
			if vi >= len(v) {
				return false
			}
			caps = append(caps, [2]int{vi, vi + 1})
			if rec(ei+1, vi+1, depth+1) {
				return true
			}
			caps = caps[:depth]
			return false
		}
		for n := 0; vi+n <= len(v); n++ {
			caps = append(caps[:depth], [2]int{vi, vi + n})
			if rec(ei+1, vi+n, depth+1) {
				return true
			}
		}
		caps = caps[:depth]
		return false
	}
	if !rec(0, 0, 0) {
		return false, nil
	}
	if !want {
		return true, nil
	}
	out := []string{val}
	for _, c := range caps {
		out = append(out, string(v[c[0]:c[1]]))
	}
	return true, out
}

// matcher is a compiled match specification.
type matcher struct {
	cmp   comparator
	kind  matchKind
	rel   relOp
	keys  []strv
	re    []*compiledRegex // precompiled when keys are constant (regex)
	globs [][]pe           // pre-tokenized constant :matches keys
	setMV bool             // set match variables (variables extension active)
}

// matchValues runs the match over values; returns whether it matched.
func (m *matcher) match(r *run, values []string) (bool, error) {
	if m.kind == mCount {
		n := len(values)
		ns := strconv.Itoa(n)
		for i := range m.keys {
			k := r.expand(&m.keys[i])
			if relHolds(m.rel, cmpNumeric.compare(ns, k)) {
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
		if m.globs != nil && m.globs[ki] != nil && m.cmp != cmpUnicodeCase {
			ok, caps = globElems(m.cmp, v, m.globs[ki], m.setMV)
		} else {
			ok, caps = globMatch(m.cmp, v, k, m.setMV)
		}
		if ok && m.setMV {
			r.setMatch(caps)
		}
		return ok, nil
	case mRegex:
		var re *regexp.Regexp
		if m.re != nil && m.re[ki] != nil {
			re = m.re[ki]
		} else {
			if re = r.reCache[k]; re == nil {
				if time.Now().After(r.deadline) {
					return false, r.runtimeErr("execution exceeded CPU time limit")
				}
				var err error
				re, err = compileRegex(k, m.cmp, r.lim.MaxRegexLen)
				if err != nil {
					// Pigeonhole: a warning, and the key does not match
					r.warn("invalid regular expression '%s' for regex match: %v", k, err)
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

func compileRegex(k string, c comparator, max int) (*regexp.Regexp, error) {
	if max > 0 && len(k) > max {
		return nil, errString("regular expression too long")
	}
	if c == cmpASCIICase || c == cmpUnicodeCase {
		k = "(?is)" + k
	} else {
		k = "(?s)" + k
	}
	// POSIX ERE: Go's RE2 is close enough and linear-time (no stalls).
	return regexp.Compile(k)
}

type compiledRegex = regexp.Regexp

type errString string

func (e errString) Error() string { return string(e) }
