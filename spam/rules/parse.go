// Package rules reads rule files in SpamAssassin's syntax — the directives
// header, body, rawbody, uri, full, meta, score, describe and tflags — and runs
// them against a message.
//
// Patterns are Perl regexes; those RE2 can express are translated (flags i, m, s,
// x; \Q…\E; possessive quantifiers and atomic groups; \Z and Perl's \h \H \v \V \R;
// \xHH runs spelling a UTF-8 character match that character), the rest
// (look-around, back-references, …) are reported with file:line and the rule is
// skipped. Problems never stop loading: a bad rule is dropped, the others load.
package rules

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Kind is the rule type.
type Kind int

// Rule kinds.
const (
	KindHeader Kind = iota
	KindBody
	KindRawBody
	KindURI
	KindFull
	KindMeta
)

var kindNames = map[string]Kind{"header": KindHeader, "body": KindBody, "rawbody": KindRawBody,
	"uri": KindURI, "full": KindFull, "meta": KindMeta}

// Problem is a located problem in a rule file; the rule it concerns is skipped.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Parser accumulates rule files into a Set.
type Parser struct {
	rules    map[string]*Rule
	order    []string
	scores   map[string]float64
	describe map[string]string
	tflags   map[string][]string
	evals    map[string]EvalFunc
	failed   map[string]bool // rules defined but skipped (for metas using them)
	Problems []Problem
	// Limits: at most MaxLines lines per file and MaxRules rules in all.
	MaxLines, MaxRules int
}

// NewParser returns a parser that knows the eval functions evals.
func NewParser(evals map[string]EvalFunc) *Parser {
	return &Parser{rules: map[string]*Rule{}, scores: map[string]float64{}, describe: map[string]string{},
		tflags: map[string][]string{}, evals: evals, failed: map[string]bool{}, MaxLines: 200000, MaxRules: 20000}
}

func (p *Parser) problem(file string, line int, format string, args ...any) {
	if len(p.Problems) < 1000 {
		p.Problems = append(p.Problems, Problem{file, line, fmt.Sprintf(format, args...)})
	}
}

// Parse reads one rule file. Only I/O errors are returned; content problems go
// to p.Problems.
func (p *Parser) Parse(name string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	lineNo := 0
	// skip counts nested conditional blocks being skipped; depth all open ones.
	var stack []bool
	skipping := func() bool {
		for _, s := range stack {
			if s {
				return true
			}
		}
		return false
	}
	for {
		text, tooLong, err := readLine(br, maxLineLen)
		if err == io.EOF {
			break
		}
		lineNo++
		if err != nil {
			return fmt.Errorf("rules: %s:%d: %w", name, lineNo, err)
		}
		if lineNo > p.MaxLines {
			p.problem(name, lineNo, "file longer than %d lines; rest ignored", p.MaxLines)
			break
		}
		if tooLong {
			// A content problem like any other: this line is dropped, the
			// rest of the file loads.
			p.problem(name, lineNo, "line longer than %d bytes ignored", maxLineLen)
			continue
		}
		line := strings.TrimSpace(text)
		if i := commentStart(line); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		directive, rest := cutField(line)
		directive = strings.ToLower(directive)
		switch directive {
		case "ifplugin":
			// No SpamAssassin Perl plugins here: their rules need their evals.
			stack = append(stack, true)
			continue
		case "if":
			ok, err := evalIf(rest)
			if err != nil {
				p.problem(name, lineNo, "if %s: %v; block skipped", trunc(rest), err)
			}
			stack = append(stack, !ok)
			continue
		case "else":
			if len(stack) > 0 {
				stack[len(stack)-1] = !stack[len(stack)-1]
			}
			continue
		case "endif":
			if len(stack) == 0 {
				p.problem(name, lineNo, "endif without if")
			} else {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if skipping() {
			continue
		}
		p.directive(name, lineNo, directive, rest)
	}
	if len(stack) > 0 {
		p.problem(name, lineNo, "%d if/ifplugin block(s) not closed with endif", len(stack))
	}
	return nil
}

// maxLineLen bounds one rule-file line.
const maxLineLen = 1 << 20

// readLine returns the next line of br without its line ending; a line
// longer than max is read to its end and reported tooLong (text empty). err
// is io.EOF only when nothing is left.
func readLine(br *bufio.Reader, max int) (text string, tooLong bool, err error) {
	var b []byte
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(b)+len(frag) > max+2 { // +2: the line ending
				tooLong, b = true, nil
			} else {
				b = append(b, frag...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && (len(b) > 0 || tooLong):
			err = nil
		case err != nil:
			return "", false, err
		}
		return strings.TrimRight(string(b), "\r\n"), tooLong, nil
	}
}

// commentStart finds an unescaped '#' that starts a comment (SpamAssassin
// allows \# inside patterns).
func commentStart(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] != '\\') {
			return i
		}
	}
	return -1
}

// cutField splits s at its first run of white space into the first field
// and the rest, trimmed. SpamAssassin splits its lines with /\s+/: fields
// aligned with tabs are as valid as with spaces.
func cutField(s string) (field, rest string) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (p *Parser) directive(file string, line int, directive, rest string) {
	kind, isRule := kindNames[directive]
	switch {
	case isRule:
		name, def := cutField(rest)
		if !validName(name) {
			p.problem(file, line, "%s: invalid rule name %q", directive, name)
			return
		}
		if len(p.rules) >= p.MaxRules {
			p.problem(file, line, "more than %d rules; %s ignored", p.MaxRules, name)
			p.failed[name] = true
			return
		}
		r, err := p.compile(kind, name, def)
		if err != nil {
			p.problem(file, line, "%s %s: %v; rule skipped", directive, name, err)
			p.failed[name] = true
			return
		}
		r.File, r.Line = file, line
		if _, dup := p.rules[name]; !dup {
			p.order = append(p.order, name)
		}
		p.rules[name] = r
	case directive == "score":
		f := strings.Fields(rest)
		if len(f) < 2 {
			p.problem(file, line, "score: want NAME SCORE")
			return
		}
		// With four scores, SpamAssassin picks a set by Bayes/network use; we
		// run with Bayes and without network tests: set 2 (third value).
		v := f[1]
		if len(f) >= 5 {
			v = f[3]
		}
		s, err := strconv.ParseFloat(v, 64)
		// ParseFloat also reads "nan" and "inf": a NaN or infinite score
		// would make every message's sum NaN or ±Inf.
		if err != nil || math.IsNaN(s) || math.IsInf(s, 0) {
			p.problem(file, line, "score %s: %q is not a number", f[0], v)
			return
		}
		p.scores[f[0]] = s
	case directive == "describe":
		name, text := cutField(rest)
		p.describe[name] = text
	case directive == "tflags":
		f := strings.Fields(rest)
		if len(f) > 0 {
			// SpamAssassin keeps the last tflags line of a rule, so a local
			// file can take flags away from a default rule.
			p.tflags[f[0]] = f[1:]
		}
	case ignoredRuleDirectives[directive]:
		// A rule we accept but do not run: a meta using it must be skipped
		// (see Build), not read it as "no hit" — "A && !__MIME_B" would
		// fire on every A.
		if name, _ := cutField(rest); validName(name) {
			p.failed[name] = true
		}
	case knownIgnored[directive]:
		// Accepted for compatibility, no effect here.
	default:
		p.problem(file, line, "unknown directive %q ignored", directive)
	}
}

// SAVersion is the SpamAssassin version rule files see in "if (version …)":
// the syntax and features dovetail follows are 3.4.6's.
const SAVersion = 3.004006

// evalIf evaluates the condition of an "if" line as SpamAssassin would with
// none of its Perl plugins loaded: version compares against SAVersion,
// perl_version against 5.036, can(…) and plugin(…) are false (they ask for
// Perl code dovetail does not have). The operators are ! && || and, or, not,
// comparisons and parentheses. An expression it cannot read is an error
// (and the block is skipped).
func evalIf(s string) (bool, error) {
	e := &ifExpr{toks: ifTokens(s)}
	v, err := e.or()
	if err == nil && e.i < len(e.toks) {
		err = fmt.Errorf("unexpected %q", e.toks[e.i])
	}
	if err != nil {
		return false, err
	}
	return v != 0, nil
}

func ifTokens(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case strings.ContainsRune("()", rune(c)):
			out = append(out, s[i:i+1])
			i++
		case strings.ContainsRune("!<>=&|", rune(c)):
			j := i + 1
			if j < len(s) && strings.ContainsRune("=&|", rune(s[j])) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t()!<>=&|", rune(s[j])) {
				j++
			}
			// can(Mail::…::feature) and plugin(…): one token with the argument.
			if w := s[i:j]; (w == "can" || w == "plugin" || w == "has") && j < len(s) && s[j] == '(' {
				if k := strings.IndexByte(s[j:], ')'); k >= 0 {
					j += k + 1
				}
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

type ifExpr struct {
	toks  []string
	i     int
	depth int // nesting, bounded so a hostile line cannot exhaust the stack
}

func (e *ifExpr) peek() string {
	if e.i < len(e.toks) {
		return e.toks[e.i]
	}
	return ""
}

func (e *ifExpr) or() (float64, error) {
	v, err := e.and()
	for err == nil && (e.peek() == "||" || e.peek() == "or") {
		e.i++
		var w float64
		if w, err = e.and(); v == 0 {
			v = w
		}
	}
	return v, err
}

func (e *ifExpr) and() (float64, error) {
	v, err := e.cmp()
	for err == nil && (e.peek() == "&&" || e.peek() == "and") {
		e.i++
		var w float64
		if w, err = e.cmp(); v != 0 {
			v = w
		}
	}
	return v, err
}

func (e *ifExpr) cmp() (float64, error) {
	a, err := e.unary()
	if err != nil {
		return 0, err
	}
	op := e.peek()
	switch op {
	case "<", "<=", ">", ">=", "==", "!=":
	default:
		return a, nil
	}
	e.i++
	b, err := e.unary()
	if err != nil {
		return 0, err
	}
	return b2f(map[string]bool{"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]), nil
}

func (e *ifExpr) unary() (float64, error) {
	t := e.peek()
	e.i++
	switch {
	case t == "":
		return 0, errors.New("expression ends early")
	case e.depth > 100:
		return 0, errors.New("nested too deeply")
	case t == "!" || t == "not":
		e.depth++
		v, err := e.unary()
		e.depth--
		return b2f(v == 0), err
	case t == "(":
		e.depth++
		v, err := e.or()
		e.depth--
		if err == nil && e.peek() != ")" {
			err = errors.New("missing )")
		}
		e.i++
		return v, err
	case t == "version":
		return SAVersion, nil
	case t == "perl_version":
		return 5.036, nil
	case strings.HasPrefix(t, "can(") || strings.HasPrefix(t, "plugin(") || strings.HasPrefix(t, "has("):
		return 0, nil
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return 0, fmt.Errorf("cannot evaluate %q", t)
	}
	return v, nil
}

// knownIgnored are SpamAssassin directives we accept silently: they configure
// features handled elsewhere in dovetail (or not at all).
var knownIgnored = map[string]bool{"lang": true, "priority": true, "reuse": true, "loadplugin": true,
	"required_score": true, "report": true, "clear_report_template": true, "add_header": true,
	"rewrite_header": true, "report_safe": true, "use_bayes": true, "bayes_auto_learn": true,
	"test": true, "require_version": true, "version_tag": true, "use_auto_whitelist": true,
	"util_rb_tld": true, "util_rb_2tld": true, "util_rb_3tld": true, "redirector_pattern": true,
	"uri_detail": true, "urirhsbl": true, "urirhssub": true,
	"whitelist_from": true, "welcomelist_from": true, "blacklist_from": true, "blocklist_from": true,
	"trusted_networks": true, "internal_networks": true, "dns_available": true, "skip_rbl_checks": true}

// ignoredRuleDirectives define a rule (named by their first argument) that
// SpamAssassin runs with a plugin dovetail does not have.
var ignoredRuleDirectives = map[string]bool{"mimeheader": true, "askdns": true}
