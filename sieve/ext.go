package sieve

import (
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
)

func registerExtensions() {
	commands["set"] = cmdDef{exts: []string{"variables"}, fn: compileSet}
	tests["string"] = testDef{exts: []string{"variables"}, fn: compileString}
	commands["include"] = cmdDef{exts: []string{"include"}, fn: compileInclude}
	commands["return"] = cmdDef{exts: []string{"include"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd { return returnCmd{} }}
	commands["global"] = cmdDef{exts: []string{"include"}, fn: compileGlobal}

	flagExts := []string{"imap4flags", "imapflags"}
	for _, nm := range []string{"setflag", "addflag", "removeflag"} {
		commands[nm] = cmdDef{exts: flagExts, fn: compileFlagCmd}
	}
	commands["mark"] = cmdDef{exts: []string{"imapflags"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		return &flagCmd{op: "addflag", flags: []strv{constStr(`\flagged`)}}
	}}
	commands["unmark"] = cmdDef{exts: []string{"imapflags"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		return &flagCmd{op: "removeflag", flags: []strv{constStr(`\flagged`)}}
	}}
	tests["hasflag"] = testDef{exts: flagExts, fn: compileHasflag}

	commands["reject"] = cmdDef{exts: []string{"reject"}, fn: compileReject}
	commands["ereject"] = cmdDef{exts: []string{"ereject"}, fn: compileReject}
	commands["quarantine"] = cmdDef{exts: []string{"vnd.dovetail.quarantine"}, fn: compileQuarantine}
	tests["environment"] = testDef{exts: []string{"environment"}, fn: compileEnvironment}
	tests["spamtest"] = testDef{exts: []string{"spamtest"}, fn: compileSpamtest}
	tests["virustest"] = testDef{exts: []string{"virustest"}, fn: compileSpamtest}
	tests["mailboxexists"] = testDef{exts: []string{"mailbox"}, fn: compileMailboxExists}
	tests["ihave"] = testDef{exts: []string{"ihave"}, fn: compileIhave}
	commands["error"] = cmdDef{exts: []string{"ihave"}, fn: compileError}
	commands["debug_log"] = cmdDef{exts: []string{"vnd.dovecot.debug"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		a.str("message")
		return nopCmd{}
	}}
	tests["specialuse_exists"] = testDef{exts: []string{"special-use"}, fn: compileSpecialUseExists}
	registerMore()
	registerMetadata()
	registerReport()
}

// ---- imap4flags

type flagsArg struct{ list []strv }

func splitFlags(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, f := range strings.Fields(v) {
			dup := false
			for _, o := range out {
				if strings.EqualFold(o, f) {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, f)
			}
		}
	}
	return out
}

func (r *run) actionFlags(f *flagsArg) []string {
	if f != nil {
		fl := splitFlags(r.expandList(f.list))
		if fl == nil {
			fl = []string{}
		}
		return fl
	}
	if !r.st.flagsSet {
		return nil
	}
	return append([]string{}, r.st.flags...)
}

type flagCmd struct {
	op    string
	vname string
	flags []strv
}

func (c *flagCmd) exec(r *run) error {
	var cur []string
	if c.vname != "" {
		cur = splitFlags([]string{r.getVar(c.vname)})
	} else {
		cur = r.st.flags
	}
	nf := splitFlags(r.expandList(c.flags))
	switch c.op {
	case "setflag":
		cur = nf
	case "addflag":
		cur = splitFlags([]string{strings.Join(cur, " "), strings.Join(nf, " ")})
	case "removeflag":
		var out []string
		for _, f := range cur {
			keep := true
			for _, x := range nf {
				if strings.EqualFold(f, x) {
					keep = false
				}
			}
			if keep {
				out = append(out, f)
			}
		}
		cur = out
	}
	if c.vname != "" {
		r.setVar(c.vname, strings.Join(cur, " "))
	} else {
		r.st.flags = cur
		r.st.flagsSet = true
	}
	return nil
}

func compileFlagCmd(c *compiler, n *cmdNode, a *argp) cmd {
	fc := &flagCmd{op: n.name}
	if len(n.args) == 2 {
		if n.args[0].kind != aString {
			a.fail(n.args[0].pos, "the %s command expects a variable name string as first argument", n.name)
			return nil
		}
		if !c.has("variables") {
			a.fail(n.args[0].pos, "the %s command: a variable name requires the variables extension", n.name)
			return nil
		}
		name, ok := c.varName(a, n.args[0].pos, strv{}, n.args[0].strs[0])
		if !ok {
			return nil
		}
		fc.vname = name
		a.i++
	}
	fc.flags = a.strList("list of flags")
	if a.failed {
		return nil
	}
	return fc
}

type hasflagTest struct {
	vars []string
	m    *matcher
}

func (t *hasflagTest) eval(r *run) (bool, error) {
	var flags []string
	if len(t.vars) > 0 {
		var vals []string
		for _, v := range t.vars {
			vals = append(vals, r.getVar(v))
		}
		flags = splitFlags(vals)
	} else {
		flags = r.st.flags
	}
	if t.m.kind == mCount {
		return t.m.match(r, flags)
	}
	// every key may hold several flags
	for i := range t.m.keys {
		for _, k := range splitFlags([]string{r.expand(&t.m.keys[i])}) {
			for _, f := range flags {
				ok, err := t.m.one(r, f, k, -1)
				if err != nil {
					return false, err
				}
				if ok {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

func compileHasflag(c *compiler, n *testNode, a *argp) test {
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if !c.stdTag(a, t, &ms, stdMatch) {
			a.unknownTag(t)
		}
	}
	ht := &hasflagTest{}
	rest := len(a.args) - a.i
	if rest == 2 {
		if !c.has("variables") {
			a.fail(a.args[a.i].pos, "the hasflag test: a variable list requires the variables extension")
			return nil
		}
		ss, p, ok := a.rawStrings("variable list")
		if !ok {
			return nil
		}
		for _, s := range ss {
			nm, ok := c.varName(a, p, strv{}, s)
			if !ok {
				return nil
			}
			ht.vars = append(ht.vars, nm)
		}
	}
	keys := a.strList("list of flags")
	ht.m = c.finishMatch(a, &ms, keys)
	if ht.m == nil {
		return nil
	}
	for i := range ht.m.re {
		ht.m.re[i] = nil
	}
	return ht
}

// ---- reject / ereject / quarantine

type rejectCmd struct {
	typ    string
	reason strv
}

func (c *rejectCmd) exec(r *run) error {
	return r.addAction(&Action{Type: c.typ, Reason: r.expand(&c.reason)}, true)
}

func compileReject(c *compiler, n *cmdNode, a *argp) cmd {
	rc := &rejectCmd{typ: n.name}
	rc.reason, _ = a.str("reason")
	if a.failed {
		return nil
	}
	return rc
}

type quarantineCmd struct {
	reason strv
}

func (c *quarantineCmd) exec(r *run) error {
	return r.addAction(&Action{Type: "quarantine", Reason: r.expand(&c.reason)}, true)
}

func compileQuarantine(c *compiler, n *cmdNode, a *argp) cmd {
	q := &quarantineCmd{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "reason" {
			q.reason, _ = a.str("reason")
			continue
		}
		a.unknownTag(t)
	}
	if a.failed {
		return nil
	}
	return q
}

// ---- environment (RFC 5183)

// hostName is the "host" item unless Env.Environment sets it: the name of the
// machine running the script (RFC 5183 section 4.4, Pigeonhole's hostname),
// asked for once, when a script first wants it.
var hostName = sync.OnceValue(func() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
})

func (r *run) environment(name string) (string, bool) {
	name = strings.ToLower(name)
	if v, ok := r.env.Environment[name]; ok {
		return v, true
	}
	switch name {
	case "location":
		return "MDA", true
	case "phase":
		return "during", true
	case "name":
		return "dovetail", true
	case "version":
		return "1.0", true
	case "domain":
		if i := strings.LastIndexByte(r.env.Envelope.To, '@'); i >= 0 {
			return r.env.Envelope.To[i+1:], true
		}
		return "", false
	case "host":
		return hostName(), true
	case "vnd.dovecot.default-mailbox":
		return "INBOX", true
	case "vnd.dovecot.username":
		return r.env.Envelope.To, true
	}
	// vnd.dovecot.environment: vnd.dovecot.config.NAME is the value of the
	// sieve_env_NAME setting
	if rest, ok := strings.CutPrefix(name, "vnd.dovecot.config."); ok && rest != "" {
		return r.config("sieve_env_" + rest)
	}
	return "", false
}

type environmentTest struct {
	name strv
	m    *matcher
}

func (t *environmentTest) eval(r *run) (bool, error) {
	v, ok := r.environment(r.expand(&t.name))
	if !ok {
		return false, nil
	}
	return t.m.match(r, []string{v})
}

func compileEnvironment(c *compiler, n *testNode, a *argp) test {
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if !c.stdTag(a, t, &ms, stdMatch) {
			a.unknownTag(t)
		}
	}
	name, _ := a.str("name")
	keys := a.strList("key list")
	m := c.finishMatch(a, &ms, keys)
	if m == nil {
		return nil
	}
	return &environmentTest{name: name, m: m}
}

// ---- mailbox (RFC 5490)

type mailboxExistsTest struct{ names []strv }

func (t *mailboxExistsTest) eval(r *run) (bool, error) {
	for _, nm := range r.expandList(t.names) {
		if !validUTF8(nm) {
			return false, nil
		}
		if r.env.Mailboxes != nil && !r.env.Mailboxes.MailboxExists(nm) {
			return false, nil
		}
	}
	return true, nil
}

func compileMailboxExists(c *compiler, n *testNode, a *argp) test {
	names := a.strList("mailbox names")
	if a.failed {
		return nil
	}
	return &mailboxExistsTest{names: names}
}

// validSpecialUseFlag checks the syntax of a special-use flag (RFC 6154):
// a backslash followed by an atom.
func validSpecialUseFlag(f string) bool {
	if len(f) < 2 || f[0] != '\\' {
		return false
	}
	for i := 1; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("(){%*\"\\]", c) >= 0 {
			return false
		}
	}
	return true
}

type specialUseTest struct {
	mailbox *strv
	flags   []strv
}

func (t *specialUseTest) eval(r *run) (bool, error) {
	flags := r.expandList(t.flags)
	for _, f := range flags {
		if !validSpecialUseFlag(f) {
			return false, r.runtimeErr("invalid special-use flag '%s'", f)
		}
	}
	su, ok := r.env.Mailboxes.(SpecialUseChecker)
	if !ok {
		return false, nil
	}
	mb := ""
	if t.mailbox != nil {
		mb = r.expand(t.mailbox)
	}
	return su.SpecialUseExists(mb, flags), nil
}

func compileSpecialUseExists(c *compiler, n *testNode, a *argp) test {
	st := &specialUseTest{}
	if len(n.args)-a.i == 2 {
		mb, _ := a.str("mailbox")
		st.mailbox = &mb
	}
	st.flags = a.strList("special-use flags")
	if a.failed {
		return nil
	}
	for _, f := range st.flags {
		if f.isConst() && !validSpecialUseFlag(f.lit) {
			a.fail(n.pos, "specialuse_exists test: invalid special-use flag '%s'", f.lit)
			return nil
		}
	}
	return st
}

// ---- ihave / error (RFC 5463)

type ihaveTest struct{ ok bool }

func (t ihaveTest) eval(*run) (bool, error) { return t.ok, nil }

func compileIhave(c *compiler, n *testNode, a *argp) test {
	ss, _, ok := a.rawStrings("capabilities")
	if !ok {
		return nil
	}
	all := true
	for _, e := range ss {
		if !c.extSupported(e) || e == "vnd.dovecot.testsuite" && c.opts.testsuite == nil || e == "variables" || e == "encoded-character" {
			all = false
		}
	}
	if all {
		for _, e := range ss {
			c.exts[e] = true
			for _, x := range extImplied[e] {
				c.exts[x] = true
			}
		}
		c.checkConflicts(n.pos)
	}
	return ihaveTest{ok: all}
}

type errorCmd struct{ msg strv }

func (c *errorCmd) exec(r *run) error {
	return r.runtimeErr("%s", r.expand(&c.msg))
}

func compileError(c *compiler, n *cmdNode, a *argp) cmd {
	m, _ := a.str("message")
	if a.failed {
		return nil
	}
	return &errorCmd{msg: m}
}

// ---- spamtest / virustest (RFC 5235), Pigeonhole configuration

type spamTest struct {
	virus   bool
	percent bool
	m       *matcher
}

func compileSpamtest(c *compiler, n *testNode, a *argp) test {
	st := &spamTest{virus: n.name == "virustest"}
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "percent" && !st.virus && c.has("spamtestplus") {
			st.percent = true
			continue
		}
		if !c.stdTag(a, t, &ms, stdMatch) {
			a.unknownTag(t)
		}
	}
	keys := a.strList("value")
	if !ms.cmpSet && !a.failed && ms.kind != mContains && ms.kind != mMatches && ms.kind != mRegex {
		ms.cmp, ms.cmpSet = cmpNumeric, true
	}
	st.m = c.finishMatch(a, &ms, keys)
	if st.m == nil {
		return nil
	}
	return st
}

func (t *spamTest) eval(r *run) (bool, error) {
	v := r.spamValue(t.virus, t.percent)
	return t.m.match(r, []string{v})
}

// spamValue computes the spamtest/virustest value string.
func (r *run) spamValue(virus, percent bool) string {
	prefix := "sieve_spamtest_"
	if virus {
		prefix = "sieve_virustest_"
	}
	cfg := func(k string) string { v, _ := r.config(prefix + k); return strings.TrimSpace(v) }
	statusHeader := cfg("status_header")
	if statusHeader == "" {
		return "0"
	}
	stype := cfg("status_type")
	hname, hre := statusHeader, ""
	if i := strings.IndexByte(statusHeader, ':'); i >= 0 {
		hname, hre = strings.TrimSpace(statusHeader[:i]), strings.TrimSpace(statusHeader[i+1:])
	}
	hv, ok := r.firstHeader(hname)
	if !ok {
		return "0"
	}
	if hre != "" {
		re, err := compileRegex(hre, cmpOctet, DefaultLimits())
		if err != nil {
			return "0"
		}
		m := re.FindStringSubmatch(hv)
		if m == nil {
			return "0"
		}
		if len(m) > 1 {
			hv = m[1]
		} else {
			hv = m[0]
		}
	}
	hv = strings.TrimSpace(hv)
	maxScale := func() (float64, bool) {
		mh := cfg("max_header")
		if mh != "" {
			mname, mre := mh, ""
			if i := strings.IndexByte(mh, ':'); i >= 0 {
				mname, mre = strings.TrimSpace(mh[:i]), strings.TrimSpace(mh[i+1:])
			}
			mv, ok := r.firstHeader(mname)
			if !ok {
				return 0, false
			}
			if mre != "" {
				re, err := compileRegex(mre, cmpOctet, DefaultLimits())
				if err != nil {
					return 0, false
				}
				m := re.FindStringSubmatch(mv)
				if m == nil {
					return 0, false
				}
				if len(m) > 1 {
					mv = m[1]
				} else {
					mv = m[0]
				}
			}
			return parseSpamDecimal(strings.TrimSpace(mv))
		}
		return parseSpamDecimal(cfg("max_value"))
	}
	var frac float64 // 0..1 of the scale
	switch stype {
	case "", "score":
		score, ok := parseSpamDecimal(hv)
		if !ok {
			return "0"
		}
		max, ok := maxScale()
		if !ok || max <= 0 {
			return "0"
		}
		if score < 0 {
			score = 0
		}
		if score > max {
			score = max
		}
		frac = score / max
	case "strlen":
		max, ok := maxScale()
		if !ok || max <= 0 {
			return "0"
		}
		n := 0
		for _, ch := range hv {
			if ch != ' ' && ch != '\t' {
				n++
			}
		}
		score := float64(n)
		if score > max {
			score = max
		}
		frac = score / max
	case "text":
		found := -1
		for i := 0; i <= 10; i++ {
			tv := cfg("text_value" + strconv.Itoa(i))
			if tv != "" && strings.EqualFold(strings.TrimSpace(hv), tv) {
				found = i
				break
			}
		}
		if found < 0 {
			return "0"
		}
		if virus {
			if found < 1 {
				return "0"
			}
			if found > 5 {
				found = 5
			}
			return strconv.Itoa(found)
		}
		if percent {
			return strconv.Itoa(found * 10)
		}
		if found < 1 {
			return "0"
		}
		return strconv.Itoa(found)
	default:
		return "0"
	}
	if virus {
		v := 1 + int(frac*4)
		return strconv.Itoa(v)
	}
	if percent {
		return strconv.Itoa(int(math.Round(frac * 100)))
	}
	v := 1 + int(frac*9)
	return strconv.Itoa(v)
}

// parseSpamDecimal reads a spamtest score or maximum as Pigeonhole's
// ext_spamvirustest_parse_decimal_value does: an optional sign, at most five
// digits, optionally a '.' or ',' radix point and at most five more digits,
// and nothing else. strconv.ParseFloat also takes "NaN" (whose conversion to
// a spam level is platform-dependent garbage, on amd64 a negative number that
// i;ascii-numeric orders above every level), "Inf", "1e3" and "0x1p3", all
// of which the header's author could write, and refuses "6,5".
func parseSpamDecimal(s string) (float64, bool) {
	if s == "" {
		return 0, false
	}
	sign := 1.0
	if s[0] == '+' || s[0] == '-' {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
	}
	intPart, frac := s, ""
	if i := strings.IndexAny(s, ".,"); i >= 0 {
		intPart, frac = s[:i], s[i+1:]
	}
	digits := func(d string) bool {
		if len(d) > 5 {
			return false
		}
		for i := 0; i < len(d); i++ {
			if d[i] < '0' || d[i] > '9' {
				return false
			}
		}
		return true
	}
	if !digits(intPart) || !digits(frac) {
		return 0, false
	}
	v := 0.0
	for i := 0; i < len(intPart); i++ {
		v = v*10 + float64(intPart[i]-'0')
	}
	radix := 0.1
	for i := 0; i < len(frac); i++ {
		v += float64(frac[i]-'0') * radix
		radix /= 10
	}
	return v * sign, true
}

func (r *run) firstHeader(name string) (string, bool) {
	for _, h := range r.headers() {
		if strings.EqualFold(h.Name, name) {
			return decodeHeader(h.Value), true
		}
	}
	return "", false
}
