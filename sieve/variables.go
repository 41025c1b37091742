package sieve

import (
	"errors"
	"net/url"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

type modifier int

const (
	modLower modifier = iota
	modUpper
	modLowerFirst
	modUpperFirst
	modQuoteWildcard
	modQuoteRegex
	modEncodeURL
	modLength
)

var modifierPrec = map[string]struct {
	m    modifier
	prec int
	ext  string
}{
	"lower":         {modLower, 40, ""},
	"upper":         {modUpper, 40, ""},
	"lowerfirst":    {modLowerFirst, 30, ""},
	"upperfirst":    {modUpperFirst, 30, ""},
	"quotewildcard": {modQuoteWildcard, 20, ""},
	"quoteregex":    {modQuoteRegex, 20, "regex"},
	"encodeurl":     {modEncodeURL, 15, "enotify"},
	"length":        {modLength, 10, ""},
}

type setCmd struct {
	name string
	val  strv
	mods []modifier // applied in order (highest precedence first)
}

func applyModifier(m modifier, v string) string {
	switch m {
	case modLower:
		return strings.ToLower(v)
	case modUpper:
		return strings.ToUpper(v)
	case modLowerFirst, modUpperFirst:
		if v == "" {
			return v
		}
		r, sz := utf8.DecodeRuneInString(v)
		if m == modLowerFirst {
			r = unicode.ToLower(r)
		} else {
			r = unicode.ToUpper(r)
		}
		return string(r) + v[sz:]
	case modQuoteWildcard:
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '*' || v[i] == '?' || v[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[i])
		}
		return b.String()
	case modQuoteRegex:
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if strings.IndexByte(`\^$.[]|()?*+{}`, v[i]) >= 0 {
				b.WriteByte('\\')
			}
			b.WriteByte(v[i])
		}
		return b.String()
	case modEncodeURL:
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			c := v[i]
			if isUnreserved(c) {
				b.WriteByte(c)
			} else {
				b.WriteString("%" + strings.ToUpper(hex2(c)))
			}
		}
		return b.String()
	case modLength:
		return itoa(utf8.RuneCountInString(v))
	}
	return v
}

func isUnreserved(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~'
}

func hex2(c byte) string {
	const h = "0123456789abcdef"
	return string([]byte{h[c>>4], h[c&15]})
}

var _ = url.QueryEscape

func (c *setCmd) exec(r *run) error {
	v := r.expand(&c.val)
	max := r.lim.MaxVariableSize
	if len(v) > max {
		v = truncUTF8(v, max)
	}
	for _, m := range c.mods {
		if m == modEncodeURL {
			v = encodeURLLimited(v, max)
			continue
		}
		v = applyModifier(m, v)
		if len(v) > max {
			switch m {
			case modQuoteWildcard, modQuoteRegex:
				v = v[:max]
				// do not split an escape pair
				n := 0
				for i := len(v) - 1; i >= 0 && v[i] == '\\'; i-- {
					n++
				}
				if n%2 == 1 {
					v = v[:len(v)-1]
				}
				v = truncUTF8(v, max)
			case modEncodeURL:
				v = v[:max]
				if i := strings.LastIndexByte(v, '%'); i >= 0 && i > len(v)-3 {
					v = v[:i]
				}
			default:
				v = truncUTF8(v, max)
			}
		}
	}
	r.setVar(c.name, v)
	return nil
}

func (c *compiler) varName(a *argp, p Pos, s strv, raw string) (string, bool) {
	name := strings.ToLower(raw)
	if len(name) > 64 {
		a.fail(p, "variable name '%s' is too long", raw)
		return "", false
	}
	if strings.Contains(name, ".") && !strings.HasPrefix(name, "global.") {
		a.fail(p, "variable name '%s' uses an unknown namespace", raw)
		return "", false
	}
	if strings.HasPrefix(name, "global.") && c.has("include") {
		rest := name[7:]
		if !validVarName(rest, false) {
			a.fail(p, "invalid variable name '%s'", raw)
			return "", false
		}
		return name, true
	}
	if !validVarName(name, false) {
		a.fail(p, "invalid variable name '%s'", raw)
		return "", false
	}
	if c.globals[name] {
		return "global." + name, true
	}
	if c.varNames == nil {
		c.varNames = map[string]bool{}
	}
	c.varNames[name] = true
	if len(c.varNames) > c.lim.MaxVariables {
		if !c.varLimitHit {
			c.varLimitHit = true
			a.fail(p, "number of variables exceeds the maximum (%d)", c.lim.MaxVariables)
		} else {
			a.failed = true
		}
		return "", false
	}
	return name, true
}

// modPrec is a modifier with its precedence (RFC 5229 section 4).
type modPrec struct {
	m    modifier
	prec int
}

// modifierTag takes t into mods if it is a modifier of set or extracttext
// (RFC 5703 section 7 gives extracttext the same modifiers and rules); two
// modifiers of the same precedence are an error.
func (c *compiler) modifierTag(a *argp, t arg, mods *[]modPrec) bool {
	mp, known := modifierPrec[t.tag]
	if !known || (mp.ext != "" && !c.has(mp.ext)) {
		return false
	}
	for _, o := range *mods {
		if o.prec == mp.prec {
			if o.m == mp.m {
				break
			}
			a.fail(t.pos, "modifiers :%s and the other modifier of the same precedence cannot be used together", t.tag)
		}
	}
	*mods = append(*mods, modPrec{mp.m, mp.prec})
	return true
}

// byPrecedence orders modifiers as they are applied: highest precedence first.
func byPrecedence(mods []modPrec) []modifier {
	sort.SliceStable(mods, func(i, j int) bool { return mods[i].prec > mods[j].prec })
	out := make([]modifier, len(mods))
	for i, m := range mods {
		out[i] = m.m
	}
	return out
}

func compileSet(c *compiler, n *cmdNode, a *argp) cmd {
	sc := &setCmd{}
	var mods []modPrec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if !c.modifierTag(a, t, &mods) {
			a.unknownTag(t)
		}
	}
	if a.failed {
		return nil
	}
	if a.i >= len(a.args) || a.args[a.i].kind != aString {
		a.str("name")
		return nil
	}
	rawName := a.args[a.i].strs[0]
	namePos := a.args[a.i].pos
	a.i++
	sc.val, _ = a.str("value")
	if a.failed {
		return nil
	}
	name, ok := c.varName(a, namePos, strv{}, rawName)
	if !ok {
		return nil
	}
	sc.name = name
	if len(mods) > 0 {
		sc.mods = byPrecedence(mods)
	}
	return sc
}

type stringTest struct {
	src []strv
	m   *matcher
}

func (t *stringTest) eval(r *run) (bool, error) {
	vals := r.expandList(t.src)
	if t.m.kind == mCount {
		var ne []string
		for _, v := range vals {
			if v != "" {
				ne = append(ne, v)
			}
		}
		vals = ne
	}
	return t.m.match(r, vals)
}

func compileString(c *compiler, n *testNode, a *argp) test {
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if !c.stdTag(a, t, &ms, stdMatch) {
			a.unknownTag(t)
		}
	}
	src := a.strList("source")
	keys := a.strList("key list")
	if !ms.cmpSet {
		// Pigeonhole's string test defaults to i;octet
		ms.cmp, ms.cmpSet = cmpOctet, true
	}
	m := c.finishMatch(a, &ms, keys)
	if m == nil {
		return nil
	}
	return &stringTest{src: src, m: m}
}

// ---- include (RFC 6609)

type includeRef struct {
	loc      IncludeLocation
	name     string
	once     bool
	optional bool
	script   *Script // nil when optional and missing
	key      string
	lazy     *includeState // resolves a :once back-reference after compilation
}

type includeState struct {
	seen  map[string]*Script
	stack []string
	count int
	// regexSize sums the compiled size of the constant regexes of the script
	// and everything it includes.
	regexSize int
}

type includeCmd struct{ ref *includeRef }

func (c *includeCmd) exec(r *run) error {
	ref := c.ref
	sc := ref.script
	if sc == nil && ref.lazy != nil {
		sc = ref.lazy.seen[ref.key]
	}
	if sc == nil {
		return nil
	}
	if r.onceDone == nil {
		r.onceDone = map[*Script]bool{}
	}
	if ref.once && r.onceDone[sc] {
		return nil
	}
	r.onceDone[sc] = true
	if len(r.incStack) >= r.lim.MaxIncludeDepth {
		return r.runtimeErr("include nesting too deep")
	}
	sub := &run{mime: r.mime, ctx: r.ctx, env: r.env, lim: r.lim, script: sc, st: r.st, globals: r.globals, steps: r.steps, deadline: r.deadline, incStack: append(r.incStack, r.script), incCount: r.incCount, onceDone: r.onceDone}
	err := execBlock(sub, sc.body)
	if err == errReturn {
		return nil
	}
	return err
}

type returnCmd struct{}

func (returnCmd) exec(*run) error { return errReturn }

func compileInclude(c *compiler, n *cmdNode, a *argp) cmd {
	ref := &includeRef{}
	locSet := false
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		switch t.tag {
		case "personal", "global":
			if locSet {
				a.fail(t.pos, "multiple location tags specified for the include command")
				continue
			}
			locSet = true
			if t.tag == "global" {
				ref.loc = Global
			}
		case "once":
			ref.once = true
		case "optional":
			ref.optional = true
		default:
			a.unknownTag(t)
		}
	}
	name, _ := a.str("script name")
	if a.failed {
		return nil
	}
	if !name.isConst() {
		a.fail(n.pos, "the include command requires a constant script name")
		return nil
	}
	ref.name = name.lit
	if ref.name == "" || strings.ContainsAny(ref.name, "/\x00") || !validUTF8(ref.name) || strings.HasPrefix(ref.name, ".") || len(ref.name) > 255 {
		a.fail(n.pos, "include: invalid script name '%s'", ref.name)
		return nil
	}
	for _, ch := range ref.name {
		if ch < 0x20 || ch == 0x7f || (ch >= 0x80 && ch < 0xa0) || ch == 0x2028 || ch == 0x2029 {
			a.fail(n.pos, "include: invalid script name '%s'", ref.name)
			return nil
		}
	}
	st := c.incState
	key := string(rune('0'+int(ref.loc))) + ":" + ref.name
	ref.key = key
	for _, s := range st.stack {
		if s == key {
			if ref.once {
				ref.lazy = st
				return &includeCmd{ref: ref}
			}
			a.fail(n.pos, "circular include of script '%s'", ref.name)
			return nil
		}
	}
	if sc, ok := st.seen[key]; ok {
		ref.script = sc
		c.includes = append(c.includes, ref)
		return &includeCmd{ref: ref}
	}
	if c.opts.Includes == nil {
		if ref.optional {
			return &includeCmd{ref: ref}
		}
		a.fail(n.pos, "included %s script '%s' does not exist", locName(ref.loc), ref.name)
		return nil
	}
	src, err := c.opts.Includes.LoadScript(ref.loc, ref.name)
	if err != nil && !errors.Is(err, ErrScriptNotFound) {
		// Only a missing script is what :optional skips (as Pigeonhole's
		// SIEVE_ERROR_NOT_FOUND): a script that is there but cannot be read
		// (permissions, I/O, size) must not silently drop out of the filter.
		a.fail(n.pos, "failed to read included %s script '%s': %v", locName(ref.loc), ref.name, err)
		return nil
	}
	if err != nil {
		if ref.optional {
			return &includeCmd{ref: ref}
		}
		a.fail(n.pos, "included %s script '%s' does not exist", locName(ref.loc), ref.name)
		return nil
	}
	st.count++
	if st.count > c.lim.MaxIncludes {
		a.fail(n.pos, "failed to include script '%s': total number of included scripts exceeds the limit (%d)", ref.name, c.lim.MaxIncludes)
		return nil
	}
	if len(st.stack)+1 > c.lim.MaxIncludeDepth {
		a.fail(n.pos, "failed to include script '%s': include nesting depth exceeds the limit (%d)", ref.name, c.lim.MaxIncludeDepth)
		return nil
	}
	st.stack = append(st.stack, key)
	if len(st.stack) == 1 {
		// the including (top) script itself
	}
	sc, err := compileWith(ref.name, src, c.opts, st, c.incDepth+1)
	st.stack = st.stack[:len(st.stack)-1]
	if err != nil {
		if ce, ok := err.(*CompileError); ok {
			c.errs.list = append(c.errs.list, ce.Errors...)
		}
		a.fail(n.pos, "failed to compile included %s script '%s'", locName(ref.loc), ref.name)
		return nil
	}
	st.seen[key] = sc
	ref.script = sc
	c.includes = append(c.includes, ref)
	return &includeCmd{ref: ref}
}

func locName(l IncludeLocation) string {
	if l == Global {
		return "global"
	}
	return "personal"
}

func compileGlobal(c *compiler, n *cmdNode, a *argp) cmd {
	ss, p, ok := a.rawStrings("variable names")
	if !ok {
		return nil
	}
	if !c.has("variables") {
		a.fail(n.pos, "the global command requires the variables extension")
		return nil
	}
	for _, s := range ss {
		nm := strings.ToLower(s)
		if !validVarName(nm, false) {
			a.fail(p, "invalid global variable name '%s'", s)
			return nil
		}
		if c.globals == nil {
			c.globals = map[string]bool{}
		}
		c.globals[nm] = true
	}
	return nopCmd{}
}

// encodeURLLimited percent-encodes v, stopping before a character whose
// encoding would exceed max bytes.
func encodeURLLimited(v string, max int) string {
	var b strings.Builder
	for _, r := range v {
		var enc string
		if r < 0x80 && isUnreserved(byte(r)) {
			enc = string(r)
		} else {
			var sb strings.Builder
			for _, c := range []byte(string(r)) {
				sb.WriteString("%" + strings.ToUpper(hex2(c)))
			}
			enc = sb.String()
		}
		if b.Len()+len(enc) > max {
			break
		}
		b.WriteString(enc)
	}
	return b.String()
}
