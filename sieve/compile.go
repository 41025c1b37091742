package sieve

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Script is a compiled Sieve script; immutable and safe for concurrent use.
type Script struct {
	name     string
	body     []cmd
	exts     map[string]bool
	lim      Limits
	includes []*includeRef
	suite    *suiteRunner
	src      []byte
}

// Name returns the script name given to Compile.
func (s *Script) Name() string { return s.name }

// Requires reports whether the script required the extension.
func (s *Script) Requires(ext string) bool { return s.exts[ext] }

// supportedExtensions lists every capability string this interpreter knows.
var supportedExtensions = []string{
	"fileinto", "envelope", "encoded-character", "copy", "body", "environment",
	"variables", "vacation", "vacation-seconds", "relational",
	"comparator-i;octet", "comparator-i;ascii-casemap", "comparator-i;ascii-numeric",
	"comparator-i;unicode-casemap", "imap4flags", "subaddress", "spamtest",
	"spamtestplus", "virustest", "date", "index", "editheader", "reject", "ereject",
	"enotify", "ihave", "mailbox", "mime", "foreverypart", "extracttext", "include",
	"duplicate", "regex", "special-use", "mboxmetadata", "servermetadata", "vnd.dovetail.quarantine",
	"vnd.dovecot.duplicate", "vnd.dovecot.environment", "vnd.dovecot.debug", "vnd.dovecot.report", "imapflags", "notify",
}

// Extensions returns the supported capability strings.
func Extensions() []string { return append([]string(nil), supportedExtensions...) }

var extImplied = map[string][]string{
	"spamtestplus":            {"spamtest"},
	"vacation-seconds":        {"vacation"},
	"vnd.dovecot.environment": {"environment", "variables"},
}

type compiler struct {
	name             string
	errs             *errList
	exts             map[string]bool
	allowed          map[string]bool
	opts             *Options
	lim              Limits
	loopNames        []string
	includes         []*includeRef
	incDepth         int
	incState         *includeState
	globals          map[string]bool
	varNames         map[string]bool
	varLimitHit      bool
	conflictReported bool
	requireOK        bool // still at the start of the script
	nestDepth        int
}

func compile(name string, src []byte, opts *Options) (*Script, error) {
	st := &includeState{seen: map[string]*Script{}}
	return compileWith(name, src, opts, st, 0)
}

func compileWith(name string, src []byte, opts *Options, st *includeState, depth int) (*Script, error) {
	if opts == nil {
		opts = &Options{}
	}
	lim := opts.Limits.withDefaults()
	errs := &errList{script: name, max: 100}
	if len(src) > lim.MaxScriptSize {
		errs.add(Pos{1, 1}, "script is too large (max %d bytes)", lim.MaxScriptSize)
		return nil, &CompileError{Errors: errs.list}
	}
	c := &compiler{name: name, errs: errs, exts: map[string]bool{}, opts: opts, lim: lim, incState: st, incDepth: depth, requireOK: true}
	if opts.Extensions != nil {
		c.allowed = map[string]bool{}
		for _, e := range opts.Extensions {
			c.allowed[e] = true
		}
	}
	nodes := parseScript(src, errs, lim)
	if len(errs.list) > 0 {
		// As in Pigeonhole, a script that does not parse is not validated.
		return nil, &CompileError{Errors: errs.list}
	}
	var body []cmd
	{
		body = c.block(nodes)
		if c.exts["extracttext"] && (!c.exts["variables"] || !c.exts["foreverypart"]) {
			c.errorf(Pos{1, 1}, "the extracttext extension cannot be used without the variables and foreverypart extensions")
		}
	}
	if len(errs.list) > 0 {
		return nil, &CompileError{Errors: errs.list}
	}
	return &Script{name: name, body: body, exts: c.exts, lim: lim, includes: c.includes, suite: opts.testsuite, src: src}, nil
}

func (c *compiler) errorf(p Pos, format string, args ...any) {
	c.errs.add(p, format, args...)
}

func (c *compiler) has(ext string) bool { return c.exts[ext] }

func (c *compiler) extSupported(ext string) bool {
	if ext == "vnd.dovecot.testsuite" {
		return c.opts.testsuite != nil
	}
	if c.allowed != nil && !c.allowed[ext] {
		return false
	}
	for _, e := range supportedExtensions {
		if e == ext {
			return true
		}
	}
	return false
}

func (c *compiler) block(nodes []*cmdNode) []cmd {
	var out []cmd
	var prevIf *ifCmd
	orphan := false
	for _, n := range nodes {
		if n.name != "require" {
			c.requireOK = false
		}
		switch n.name {
		case "elsif", "else":
			if prevIf == nil {
				if !orphan {
					c.errorf(n.pos, "the %s command must follow an if or elseif command", n.name)
				}
				orphan = n.name == "elsif"
				continue
			}
			cond, blk := c.ifParts(n)
			prevIf.branches = append(prevIf.branches, ifBranch{cond: cond, body: blk})
			if n.name == "else" {
				prevIf = nil
			}
			continue
		case "if":
			orphan = false
			cond, blk := c.ifParts(n)
			prevIf = &ifCmd{branches: []ifBranch{{cond: cond, body: blk}}}
			out = append(out, located{prevIf, n.pos})
			continue
		}
		prevIf = nil
		orphan = false
		if x := c.command(n); x != nil {
			out = append(out, located{x, n.pos})
		}
	}
	return out
}

func (c *compiler) ifParts(n *cmdNode) (test, []cmd) {
	var cond test
	if n.name == "else" {
		if len(n.args) > 0 || len(n.tests) > 0 {
			c.errorf(n.pos, "the else command does not accept arguments or tests")
		}
	} else {
		if len(n.args) > 0 {
			c.errorf(n.args[0].pos, "the %s command accepts no arguments other than a test", n.name)
		}
		if len(n.tests) != 1 || n.paren {
			c.errorf(n.pos, "the %s command requires one test argument", n.name)
		} else {
			cond = c.test(n.tests[0])
		}
	}
	if !n.hasBlock {
		c.errorf(n.pos, "the %s command requires a command block", n.name)
	}
	if it, ok := cond.(ihaveTest); ok && !it.ok {
		// RFC 5463: the block of a failed ihave is not validated
		return cond, nil
	}
	c.nestDepth++
	blk := c.block(n.block)
	c.nestDepth--
	return cond, blk
}

type cmdDef struct {
	exts  []string // any of these required ("" none)
	block bool     // takes a block
	fn    func(c *compiler, n *cmdNode, a *argp) cmd
}

type testDef struct {
	exts []string
	fn   func(c *compiler, n *testNode, a *argp) test
}

var commands map[string]cmdDef
var tests map[string]testDef

func (c *compiler) extOK(exts []string) bool {
	if len(exts) == 0 {
		return true
	}
	for _, e := range exts {
		if c.exts[e] {
			return true
		}
	}
	return false
}

func (c *compiler) command(n *cmdNode) cmd {
	def, ok := commands[n.name]
	if _, isTest := tests[n.name]; !ok && isTest {
		c.errorf(n.pos, "the '%s' is a test: cannot use test '%s' as command", n.name, n.name)
		return nil
	}
	if !ok || !c.extOK(def.exts) {
		if ok {
			c.errorf(n.pos, "unknown command '%s' (only reported as such because the required extension '%s' is not loaded)", n.name, def.exts[0])
		} else {
			c.errorf(n.pos, "unknown command '%s'", n.name)
		}
		return nil
	}
	bad := false
	if len(n.tests) > 0 && n.name != "test" {
		c.spuriousSubtest(n.pos, n.name, "command", n.tests[0].name)
		bad = true
	}
	if def.block && !n.hasBlock {
		c.errorf(n.pos, "the %s command requires a command block", n.name)
		return nil
	}
	a := &argp{c: c, what: n.name + " command", pos: n.pos, args: n.args, posMode: true}
	if !def.block && n.hasBlock && !bad {
		c.errorf(n.pos, "the %s command does not accept a command block", n.name)
		bad = true
	} else if n.hasBlock && !def.block {
		bad = true
	}
	if bad {
		// like Pigeonhole: after a structural error only surplus
		// arguments are still reported
		if len(n.args) > 0 && n.args[len(n.args)-1].kind != aTag && positionalCount[n.name] < countPositional(n.args) {
			c.errorf(n.args[len(n.args)-1].pos, "the %s command has too many arguments", n.name)
		}
		return nil
	}
	x := def.fn(c, n, a)
	if x == nil {
		return nil
	}
	if !a.failed {
		a.done()
	}
	return x
}

// commonTags are tags that a forgotten ':' typically turns into a test.
var commonTags = map[string]bool{
	"is": true, "contains": true, "matches": true, "regex": true, "value": true, "count": true,
	"comparator": true, "all": true, "localpart": true, "domain": true, "user": true, "detail": true,
	"over": true, "under": true, "copy": true, "create": true, "flags": true, "index": true, "last": true,
}

// spuriousSubtest reports a test given to a command or test that takes none,
// guessing the typo behind it as Pigeonhole does.
func (c *compiler) spuriousSubtest(p Pos, name, kind, sub string) {
	_, isTest := tests[sub]
	_, isCmd := commands[sub]
	switch {
	case isTest && !isCmd:
		c.errorf(p, "the %s %s accepts no sub-tests, but tests are specified", name, kind)
	case !isTest && !isCmd && commonTags[sub]:
		c.errorf(p, "missing colon ':' before ':%s' tag in %s %s", sub, name, kind)
	default:
		c.errorf(p, "missing semicolon ';' after %s %s", name, kind)
	}
}

func (c *compiler) test(n *testNode) test {
	def, ok := tests[n.name]
	if !ok || !c.extOK(def.exts) {
		if ok {
			c.errorf(n.pos, "unknown test '%s' (only reported as such because the required extension '%s' is not loaded)", n.name, def.exts[0])
		} else {
			c.errorf(n.pos, "unknown test '%s'", n.name)
		}
		return nil
	}
	a := &argp{c: c, what: n.name + " test", pos: n.pos, args: n.args, posMode: true}
	x := def.fn(c, n, a)
	switch n.name {
	case "allof", "anyof", "not":
	default:
		// after the arguments, as a forgotten ':' or ';' causes both
		if len(n.tests) > 0 {
			c.spuriousSubtest(n.pos, n.name, "test", n.tests[0].name)
			return nil
		}
	}
	if x == nil {
		return nil
	}
	if !a.failed {
		a.done()
	}
	return x
}

// argp iterates over arguments.
type argp struct {
	c       *compiler
	what    string
	pos     Pos
	args    []arg
	i       int
	npos    int  // positional arguments consumed
	posMode bool // past the tagged arguments
	failed  bool
}

func (a *argp) fail(p Pos, format string, args ...any) {
	if a.failed {
		return
	}
	a.failed = true
	a.c.errorf(p, format, args...)
}

// tag returns the next argument if it is a tag.
func (a *argp) tag() (arg, bool) {
	if a.failed || a.i >= len(a.args) || a.args[a.i].kind != aTag {
		a.posMode = true
		return arg{}, false
	}
	a.posMode = false
	a.i++
	return a.args[a.i-1], true
}

func (a *argp) unknownTag(t arg) {
	a.fail(t.pos, "unknown tagged argument ':%s' for the %s here", t.tag, a.what)
}

func (a *argp) more() bool { return !a.failed && a.i < len(a.args) }

func (a *argp) rawStrings(name string) ([]string, Pos, bool) {
	if a.failed {
		return nil, a.pos, false
	}
	if a.i >= len(a.args) {
		a.fail(a.pos, "the %s requires %d positional arguments (missing string list argument %s), but %d were specified", a.what, a.required(), name, a.npos)
		return nil, a.pos, false
	}
	x := a.args[a.i]
	if x.kind == aTag {
		word := "unknown"
		if knownTags[x.tag] {
			word = "unexpected"
		}
		a.fail(x.pos, "%s tagged argument ':%s' for the %s (expected string list argument %d: %s)", word, x.tag, a.what, a.npos+1, name)
		return nil, x.pos, false
	}
	if x.kind != aString && x.kind != aStringList {
		a.fail(x.pos, "the %s expects a string list as argument %d (%s), but %s was found", a.what, a.npos+1, name, kindName(x))
		return nil, x.pos, false
	}
	a.countPos()
	a.i++
	return x.strs, x.pos, true
}

func kindName(x arg) string {
	switch x.kind {
	case aTag:
		return "tag ':" + x.tag + "'"
	case aNumber:
		return "a number"
	case aString:
		return "a string"
	}
	return "a string list"
}

// strList reads a string list argument.
func (a *argp) strList(name string) []strv {
	ss, p, ok := a.rawStrings(name)
	if !ok {
		return nil
	}
	out := make([]strv, len(ss))
	for i, s := range ss {
		out[i] = a.c.str(s, p)
	}
	return out
}

// str reads a single string argument.
func (a *argp) str(name string) (strv, bool) {
	if a.failed {
		return strv{}, false
	}
	if a.i >= len(a.args) {
		a.fail(a.pos, "the %s requires %d positional arguments (missing string argument %s), but %d were specified", a.what, a.required(), name, a.npos)
		return strv{}, false
	}
	x := a.args[a.i]
	if x.kind != aString {
		a.fail(x.pos, "the %s expects a string as argument %d (%s), but %s was found", a.what, a.npos+1, name, kindName(x))
		return strv{}, false
	}
	a.countPos()
	a.i++
	return a.c.str(x.strs[0], x.pos), true
}

func (a *argp) num(name string) (int64, bool) {
	if a.failed {
		return 0, false
	}
	if a.i >= len(a.args) {
		a.fail(a.pos, "the %s requires %d positional arguments (missing number argument %s), but %d were specified", a.what, a.required(), name, a.npos)
		return 0, false
	}
	x := a.args[a.i]
	if x.kind != aNumber {
		a.fail(x.pos, "the %s expects a number as argument %d (%s), but %s was found", a.what, a.npos+1, name, kindName(x))
		return 0, false
	}
	a.countPos()
	a.i++
	return x.num, true
}

func (a *argp) done() {
	if a.failed {
		return
	}
	if a.i < len(a.args) {
		x := a.args[a.i]
		if x.kind == aTag {
			a.fail(x.pos, "unexpected tagged argument ':%s' for the %s here", x.tag, a.what)
		} else {
			a.fail(x.pos, "the %s has too many arguments (unexpected %s)", a.what, kindName(x))
		}
	}
}

// lastPos returns the position of the last consumed argument.
func (a *argp) lastPos() Pos {
	if a.i > 0 && a.i <= len(a.args) {
		return a.args[a.i-1].pos
	}
	return a.pos
}

// ---- strings with variables / encoded characters

type strPart struct {
	lit  string
	name string // variable name (lower-case); "" for literal
	num  int    // match variable index, or -1
}

type strv struct {
	lit   string
	parts []strPart // nil => constant
}

func (s *strv) isConst() bool { return s.parts == nil }

func constStr(s string) strv { return strv{lit: s} }

// str processes encoded-character (at compile time) and splits variable
// references when the variables extension is active.
func (c *compiler) str(s string, p Pos) strv {
	if c.has("encoded-character") && strings.Contains(s, "${") {
		s = c.decodeEncoded(s, p)
	}
	if !c.has("variables") || !strings.Contains(s, "${") {
		return strv{lit: s}
	}
	parts := parseVarRefs(s)
	for i := range parts {
		if parts[i].name != "" && c.globals[parts[i].name] {
			parts[i].name = "global." + parts[i].name
		}
		if parts[i].name != "" && strings.Contains(parts[i].name, ".") && !c.knownNamespace(parts[i].name) {
			c.errorf(p, "variable reference '${%s}' uses an unknown namespace", parts[i].name)
		}
		if parts[i].name == "" && parts[i].num > c.lim.MaxMatchValues {
			c.errorf(p, "match value index %d exceeds the maximum (%d)", parts[i].num, c.lim.MaxMatchValues)
		}
	}
	if len(parts) == 1 && parts[0].name == "" && parts[0].num < 0 {
		return strv{lit: parts[0].lit}
	}
	if len(parts) == 0 {
		return strv{}
	}
	return strv{parts: parts}
}

func parseVarRefs(s string) []strPart {
	var parts []strPart
	var lit strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i+2:], '}')
			if end >= 0 {
				name := s[i+2 : i+2+end]
				if num, ok := parseVarNum(name); ok {
					if lit.Len() > 0 {
						parts = append(parts, strPart{lit: lit.String(), num: -1})
						lit.Reset()
					}
					parts = append(parts, strPart{num: num})
					i += 3 + end
					continue
				}
				if validVarName(name, true) {
					if lit.Len() > 0 {
						parts = append(parts, strPart{lit: lit.String(), num: -1})
						lit.Reset()
					}
					parts = append(parts, strPart{name: strings.ToLower(name), num: -1})
					i += 3 + end
					continue
				}
			}
		}
		lit.WriteByte(s[i])
		i++
	}
	if lit.Len() > 0 {
		parts = append(parts, strPart{lit: lit.String(), num: -1})
	}
	return parts
}

func parseVarNum(s string) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, _ := strconv.Atoi(s)
	return n, true
}

// validVarName: identifier, optionally namespaced with dots.
func validVarName(s string, allowNS bool) bool {
	if s == "" {
		return false
	}
	for _, seg := range strings.Split(s, ".") {
		if seg == "" || !isIdentStart(seg[0]) {
			return false
		}
		for i := 1; i < len(seg); i++ {
			if !isIdentChar(seg[i]) {
				return false
			}
		}
	}
	if !allowNS && strings.Contains(s, ".") {
		return false
	}
	return true
}

func (c *compiler) decodeEncoded(s string, p Pos) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i+2:], '}')
			if end >= 0 {
				inner := s[i+2 : i+2+end]
				colon := strings.IndexByte(inner, ':')
				if colon > 0 {
					kind := strings.ToLower(strings.TrimSpace(inner[:colon]))
					if out, ok := decodeEncChars(kind, inner[colon+1:]); ok {
						b.WriteString(out)
						i += 3 + end
						continue
					} else if kind == "unicode" && out == "invalid" {
						c.errorf(p, "invalid unicode character in encoded character substitution")
					}
				}
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

func decodeEncChars(kind, body string) (string, bool) {
	if kind != "hex" && kind != "unicode" {
		return "", false
	}
	fields := strings.FieldsFunc(body, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' })
	// the body may only contain hex digits and whitespace
	for i := 0; i < len(body); i++ {
		ch := body[i]
		if !(ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || isHex(ch)) {
			return "", false
		}
	}
	if len(fields) == 0 {
		return "", false
	}
	var b strings.Builder
	for _, f := range fields {
		v, err := strconv.ParseUint(f, 16, 32)
		if err != nil {
			return "", false
		}
		if kind == "hex" {
			if len(f) > 2 && strings.TrimLeft(f[:len(f)-2], "0") != "" {
				return "", false
			}
			b.WriteByte(byte(v))
		} else {
			if v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) {
				return "invalid", false
			}
			b.WriteRune(rune(v))
		}
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// ---- require

type nopCmd struct{}

func (nopCmd) exec(*run) error { return nil }

func compileRequire(c *compiler, n *cmdNode, a *argp) cmd {
	if !c.requireOK || c.nestDepth > 0 {
		c.errorf(n.pos, "require commands can only be placed at top level at the beginning of the file")
		return nil
	}
	ss, p, ok := a.rawStrings("capabilities")
	if !ok {
		return nil
	}
	for _, e := range ss {
		e = strings.TrimSpace(e)
		if !c.extSupported(e) {
			c.errorf(p, "require command: unknown Sieve capability '%s'", e)
			continue
		}
		c.exts[e] = true
		for _, x := range extImplied[e] {
			c.exts[x] = true
		}
	}
	c.checkConflicts(p)
	if c.exts["spamtestplus"] {
		c.exts["spamtest"] = true
	}
	return nopCmd{}
}

// checkConflicts reports (once) a deprecated extension loaded together with
// its successor, by require or ihave.
func (c *compiler) checkConflicts(p Pos) {
	for _, pair := range [][2]string{{"duplicate", "vnd.dovecot.duplicate"}, {"imap4flags", "imapflags"}, {"enotify", "notify"}} {
		if c.exts[pair[0]] && c.exts[pair[1]] && !c.conflictReported {
			c.conflictReported = true
			c.errorf(p, "the %s extension cannot be used together with the %s extension", pair[1], pair[0])
		}
	}
}

func init() {
	commands = map[string]cmdDef{
		"require": {fn: compileRequire},
	}
	tests = map[string]testDef{}
	registerCore()
	registerExtensions()
}

// validUTF8 reports whether s is valid UTF-8.
func validUTF8(s string) bool { return utf8.ValidString(s) }

var _ = fmt.Sprintf

func (c *compiler) knownNamespace(name string) bool {
	ns, _, _ := strings.Cut(name, ".")
	switch ns {
	case "global":
		return c.has("include")
	case "env":
		return c.has("vnd.dovecot.environment")
	case "tst":
		return c.opts.testsuite != nil
	}
	return false
}

// countPos counts the argument at a.i as positional unless it is the
// parameter of a preceding tag.
// required returns the number of positional arguments the command needs.
func (a *argp) required() int {
	if n := positionalCount[strings.TrimSuffix(strings.TrimSuffix(a.what, " test"), " command")]; n > a.npos {
		return n
	}
	return a.npos + 1
}

var positionalCount = map[string]int{
	"header": 2, "address": 2, "envelope": 2, "exists": 1, "size": 1, "string": 2, "body": 1,
	"date": 3, "currentdate": 2, "environment": 2, "fileinto": 1, "redirect": 1, "reject": 1,
	"ereject": 1, "set": 2, "vacation": 1, "notify": 1, "include": 1, "spamtest": 1, "virustest": 1,
	"mailboxexists": 1, "valid_notify_method": 1, "notify_method_capability": 3, "addheader": 2,
	"deleteheader": 1, "require": 1,
}

func (a *argp) countPos() {
	if a.posMode {
		a.npos++
	}
}

// constList returns the values of ss when all are constant, else nil.
func constList(ss []strv) []string {
	out := make([]string, len(ss))
	for i := range ss {
		if !ss[i].isConst() {
			return nil
		}
		out[i] = ss[i].lit
	}
	return out
}

var knownTags = map[string]bool{"is": true, "contains": true, "matches": true, "regex": true, "value": true,
	"count": true, "comparator": true, "all": true, "localpart": true, "domain": true, "user": true,
	"detail": true, "index": true, "last": true, "mime": true, "anychild": true, "over": true, "under": true}

// countPositional counts the non-tag arguments (tag parameters included).
func countPositional(args []arg) int {
	n := 0
	for _, x := range args {
		if x.kind != aTag {
			n++
		}
	}
	return n
}
