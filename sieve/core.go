package sieve

import (
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"

	"github.com/emersion/go-message/charset"
)

// matchSpec collects comparator / match-type / address-part / index / mime tags.
type matchSpec struct {
	cmp      comparator
	cmpSet   bool
	kind     matchKind
	kindSet  bool
	rel      relOp
	addrPart addrPart
	addrSet  bool
	index    int
	last     bool
	mime     *mimeOpts
	kindPos  Pos
	cmpPos   Pos
	lastPos  Pos
}

type addrPart int

const (
	apAll addrPart = iota
	apLocal
	apDomain
	apUser
	apDetail
)

type stdFlags int

const (
	stdMatch stdFlags = 1 << iota
	stdAddr
	stdIndex
	stdMime
	stdMimeAny
)

// stdTag handles a standard tag; returns false if the tag is not one.
func (c *compiler) stdTag(a *argp, t arg, ms *matchSpec, fl stdFlags) bool {
	switch t.tag {
	case "comparator":
		if fl&stdMatch == 0 {
			return false
		}
		if ms.cmpSet {
			a.fail(t.pos, "multiple comparators specified for the %s", a.what)
			return true
		}
		s, ok := a.str("comparator")
		if !ok {
			return true
		}
		if !s.isConst() {
			a.fail(t.pos, "the comparator argument must be a constant string")
			return true
		}
		cm, known := comparatorNames[strings.ToLower(s.lit)]
		if !known || (cm == cmpNumeric && !c.has("comparator-i;ascii-numeric")) {
			a.fail(t.pos, "unknown comparator '%s'", s.lit)
			return true
		}
		ms.cmp, ms.cmpSet, ms.cmpPos = cm, true, t.pos
		return true
	case "is", "contains", "matches", "regex", "value", "count":
		if fl&stdMatch == 0 {
			return false
		}
		if (t.tag == "value" || t.tag == "count") && !c.has("relational") {
			return false
		}
		if t.tag == "regex" && !c.has("regex") {
			return false
		}
		if ms.kindSet {
			a.fail(t.pos, "multiple match types specified for the %s", a.what)
			return true
		}
		ms.kindSet, ms.kindPos = true, t.pos
		switch t.tag {
		case "is":
			ms.kind = mIs
		case "contains":
			ms.kind = mContains
		case "matches":
			ms.kind = mMatches
		case "regex":
			ms.kind = mRegex
		case "value", "count":
			if t.tag == "value" {
				ms.kind = mValue
			} else {
				ms.kind = mCount
			}
			s, ok := a.str("relational operator")
			if !ok {
				return true
			}
			if !s.isConst() {
				a.fail(t.pos, "the relational operator must be a constant string")
				return true
			}
			op, ok := relOps[strings.ToLower(s.lit)]
			if !ok {
				a.fail(t.pos, "invalid relational match type '%s'", s.lit)
				return true
			}
			ms.rel = op
		}
		return true
	case "all", "localpart", "domain", "user", "detail":
		if fl&stdAddr == 0 {
			return false
		}
		if (t.tag == "user" || t.tag == "detail") && !c.has("subaddress") {
			return false
		}
		if ms.addrSet {
			a.fail(t.pos, "multiple address parts specified for the %s", a.what)
			return true
		}
		ms.addrSet = true
		ms.addrPart = map[string]addrPart{"all": apAll, "localpart": apLocal, "domain": apDomain, "user": apUser, "detail": apDetail}[t.tag]
		return true
	case "index":
		if fl&stdIndex == 0 || !c.has("index") {
			return false
		}
		n, ok := a.num("index")
		if !ok {
			return true
		}
		if n == 0 {
			a.fail(t.pos, "the :index argument must be greater than zero")
			return true
		}
		ms.index = int(n)
		return true
	case "last":
		if fl&stdIndex == 0 || !c.has("index") {
			return false
		}
		ms.last, ms.lastPos = true, t.pos
		return true
	case "mime", "anychild", "type", "subtype", "contenttype", "param":
		if fl&stdMime == 0 || !c.has("mime") {
			return false
		}
		return c.mimeTag(a, t, ms, fl)
	}
	return false
}

// finishMatch validates the match spec and builds a matcher over keys.
func (c *compiler) finishMatch(a *argp, ms *matchSpec, keys []strv) *matcher {
	if a.failed {
		return nil
	}
	if ms.last && ms.index == 0 {
		a.fail(ms.lastPos, "the :last tag for the %s requires an :index tag", a.what)
		return nil
	}
	if !ms.cmpSet {
		ms.cmp = cmpASCIICase
	}
	if !ms.kindSet {
		ms.kind = mIs
	}
	m := &matcher{cmp: ms.cmp, kind: ms.kind, rel: ms.rel, keys: keys, setMV: c.has("variables")}
	if ms.cmp == cmpNumeric && (ms.kind == mContains || ms.kind == mMatches || ms.kind == mRegex) {
		a.fail(ms.kindPos, "the comparator 'i;ascii-numeric' does not support the specified match type")
		return nil
	}
	if ms.kind == mRegex {
		m.re = make([]*compiledRegex, len(keys))
		for i := range keys {
			if keys[i].isConst() {
				re, err := compileRegex(keys[i].lit, ms.cmp, c.lim)
				if err == nil {
					// Compiled scripts stay cached (lmtpd keeps thousands), so
					// what all their regexes hold is bounded as well.
					c.incState.regexSize += re.insts
					if c.incState.regexSize > c.lim.MaxRegexTotal {
						err = fmt.Errorf("the script's regular expressions are too large in total (limit %d compiled instructions)", c.lim.MaxRegexTotal)
					}
				}
				if err != nil {
					a.fail(a.lastPos(), "invalid regular expression '%s' for regex match: %v", sanitize(keys[i].lit, 128), err)
					return nil
				}
				m.re[i] = re
			}
		}
	}
	if ms.kind == mMatches {
		m.globs = make([]*globPat, len(keys))
		for i := range keys {
			if keys[i].isConst() {
				m.globs[i] = newGlob(tokenizeGlob(keys[i].lit))
			}
		}
	}
	return m
}

func registerCore() {
	commands["stop"] = cmdDef{fn: func(c *compiler, n *cmdNode, a *argp) cmd { return stopCmd{} }}
	commands["keep"] = cmdDef{fn: compileKeep}
	commands["discard"] = cmdDef{fn: func(c *compiler, n *cmdNode, a *argp) cmd { return discardCmd{} }}
	commands["redirect"] = cmdDef{fn: compileRedirect}
	commands["fileinto"] = cmdDef{exts: []string{"fileinto"}, fn: compileFileinto}

	tests["true"] = testDef{fn: func(c *compiler, n *testNode, a *argp) test { return constTest(true) }}
	tests["false"] = testDef{fn: func(c *compiler, n *testNode, a *argp) test { return constTest(false) }}
	tests["not"] = testDef{fn: compileNot}
	tests["allof"] = testDef{fn: compileAllAny}
	tests["anyof"] = testDef{fn: compileAllAny}
	tests["exists"] = testDef{fn: compileExists}
	tests["size"] = testDef{fn: compileSize}
	tests["header"] = testDef{fn: compileHeader}
	tests["address"] = testDef{fn: compileAddress}
	tests["envelope"] = testDef{exts: []string{"envelope"}, fn: compileEnvelope}
}

// ---- simple tests

type constTest bool

func (t constTest) eval(*run) (bool, error) { return bool(t), nil }

type notTest struct{ t test }

func (t notTest) eval(r *run) (bool, error) {
	ok, err := t.t.eval(r)
	return !ok, err
}

func compileNot(c *compiler, n *testNode, a *argp) test {
	if len(n.args) > 0 {
		a.fail(n.args[0].pos, "the not test accepts no arguments")
		return nil
	}
	if len(n.tests) != 1 || n.paren {
		a.fail(n.pos, "the not test requires exactly one sub-test")
		return nil
	}
	sub := c.test(n.tests[0])
	if sub == nil {
		return nil
	}
	return notTest{sub}
}

type listTest struct {
	all   bool
	tests []test
}

func (t *listTest) eval(r *run) (bool, error) {
	for _, s := range t.tests {
		ok, err := s.eval(r)
		if err != nil {
			return false, err
		}
		if ok != t.all {
			return ok, nil
		}
	}
	return t.all, nil
}

func compileAllAny(c *compiler, n *testNode, a *argp) test {
	if len(n.args) > 0 {
		a.fail(n.args[0].pos, "the %s test accepts no arguments", n.name)
		return nil
	}
	if !n.paren {
		a.fail(n.pos, "the %s test requires a test list", n.name)
		return nil
	}
	lt := &listTest{all: n.name == "allof"}
	bad := false
	for _, s := range n.tests {
		x := c.test(s)
		if x == nil {
			bad = true
			continue
		}
		lt.tests = append(lt.tests, x)
	}
	if bad {
		return nil
	}
	return lt
}

type existsTest struct {
	names  []strv
	cnames []string
	mime   *mimeOpts
}

func (t *existsTest) eval(r *run) (bool, error) {
	names := t.cnames
	if names == nil {
		names = r.expandList(t.names)
	}
	if t.mime != nil {
		return r.mimeExists(t.mime, names)
	}
	hs := r.headers()
	for _, nm := range names {
		found := false
		for i := range hs {
			if strings.EqualFold(hs[i].Name, nm) {
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

func compileExists(c *compiler, n *testNode, a *argp) test {
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if !c.stdTag(a, t, &ms, stdMime|stdMimeAny) {
			a.unknownTag(t)
		}
	}
	c.checkMime(a, n, &ms)
	names := a.strList("header names")
	if a.failed {
		return nil
	}
	return &existsTest{names: names, cnames: constList(names), mime: ms.mime}
}

type sizeTest struct {
	over bool
	n    int64
}

func (t sizeTest) eval(r *run) (bool, error) {
	sz := int64(r.env.Message.Size())
	if r.st.headersEdited {
		// counted, not rendered: a copy of the whole message per size test
		// adds up to gigabytes
		sz = int64(renderedSize(r.st.headers, r.env.Message.body))
	}
	if t.over {
		return sz > t.n, nil
	}
	return sz < t.n, nil
}

func compileSize(c *compiler, n *testNode, a *argp) test {
	var st sizeTest
	set := false
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		switch t.tag {
		case "over", "under":
			if set {
				a.fail(t.pos, "the size test requires exactly one of the :over or :under tags")
				return nil
			}
			set = true
			st.over = t.tag == "over"
		default:
			a.unknownTag(t)
		}
	}
	if !set && !a.failed {
		a.fail(n.pos, "the size test requires either the :under or the :over tag")
		return nil
	}
	st.n, _ = a.num("limit")
	if a.failed {
		return nil
	}
	return st
}

// ---- header access

func (r *run) headers() []Header {
	return r.st.headers
}

var wordDecoder = &mime.WordDecoder{CharsetReader: headerCharsetReader}

// headerCharsetReader converts an encoded-word's text to UTF-8. It never
// fails: mime.WordDecoder gives up on the whole field when one word names a
// charset it cannot convert, so "=?x-foo?q?a?= =?utf-8?q?Viagra?=" stayed
// encoded and escaped every header test on the subject. Like Dovecot
// (message_header_decode_utf8), an RFC 2231 language suffix ("utf-8*en") is
// dropped and the text of a word in an unknown charset is kept as it is,
// invalid UTF-8 replaced.
func headerCharsetReader(cs string, in io.Reader) (io.Reader, error) {
	if i := strings.IndexByte(cs, '*'); i >= 0 {
		cs = cs[:i]
	}
	if strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii") {
		return utf8Reader(in)
	}
	if rd, err := charset.Reader(cs, in); err == nil {
		return rd, nil
	}
	return utf8Reader(in)
}

func utf8Reader(in io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	return strings.NewReader(strings.ToValidUTF8(string(b), "\uFFFD")), nil
}

// decodeHeader unfolds and RFC 2047-decodes a raw header value.
func decodeHeader(v string) string {
	v = unfold(v)
	if !strings.Contains(v, "=?") {
		return v
	}
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// selectIndex applies :index/:last to a list of values.
func selectIndex(vals []string, idx int, last bool) []string {
	if idx <= 0 {
		return vals
	}
	if idx > len(vals) {
		return nil
	}
	if last {
		return vals[len(vals)-idx : len(vals)-idx+1]
	}
	return vals[idx-1 : idx]
}

type headerTest struct {
	names  []strv
	cnames []string
	m      *matcher
	index  int
	last   bool
	mime   *mimeOpts
}

func (t *headerTest) eval(r *run) (bool, error) {
	names := t.cnames
	if names == nil {
		names = r.expandList(t.names)
	}
	if t.mime != nil {
		return r.mimeHeaderTest(t, names)
	}
	hs := r.headers()
	var buf [8]string
	vals := buf[:0]
	for _, nm := range names {
		if t.index > 0 {
			var vs []string
			for i := range hs {
				if strings.EqualFold(hs[i].Name, nm) {
					vs = append(vs, decodeHeader(hs[i].Value))
				}
			}
			vals = append(vals, selectIndex(vs, t.index, t.last)...)
			continue
		}
		for i := range hs {
			if strings.EqualFold(hs[i].Name, nm) {
				vals = append(vals, decodeHeader(hs[i].Value))
			}
		}
	}
	return t.m.match(r, vals)
}

func compileHeader(c *compiler, n *testNode, a *argp) test {
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if !c.stdTag(a, t, &ms, stdMatch|stdIndex|stdMime|stdMimeAny) {
			a.unknownTag(t)
		}
	}
	c.checkMime(a, n, &ms)
	names := a.strList("header names")
	keys := a.strList("key list")
	m := c.finishMatch(a, &ms, keys)
	if m == nil {
		return nil
	}
	return &headerTest{names: names, cnames: constList(names), m: m, index: ms.index, last: ms.last, mime: ms.mime}
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 32 || s[i] >= 127 || s[i] == ':' {
			return false
		}
	}
	return true
}

// ---- addresses

type parsedAddr struct {
	local, domain string
	ok            bool // parsed as addr-spec
	raw           string
}

// parseAddressList leniently extracts addr-specs from a header value.
func parseAddressList(v string) []parsedAddr {
	v = unfold(v)
	var out []parsedAddr
	var cur strings.Builder
	depthAngle, depthCom := 0, 0
	inQuote := false
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		out = append(out, parseOneAddr(s))
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case inQuote:
			cur.WriteByte(ch)
			if ch == '\\' && i+1 < len(v) {
				i++
				cur.WriteByte(v[i])
			} else if ch == '"' {
				inQuote = false
			}
			continue
		case ch == '"' && depthCom == 0:
			inQuote = true
		case ch == '(':
			depthCom++
			continue
		case ch == ')' && depthCom > 0:
			depthCom--
			continue
		case depthCom > 0:
			continue
		case ch == '<':
			depthAngle++
		case ch == '>' && depthAngle > 0:
			depthAngle--
		case ch == ':' && depthAngle == 0:
			// group name: drop what we have
			cur.Reset()
			continue
		case ch == ';' && depthAngle == 0:
			flush()
			continue
		case ch == ',' && depthAngle == 0:
			flush()
			continue
		}
		cur.WriteByte(ch)
	}
	flush()
	return out
}

func parseOneAddr(s string) parsedAddr {
	raw := s
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		j := strings.IndexByte(s[i:], '>')
		if j >= 0 {
			s = s[i+1 : i+j]
		} else {
			s = s[i+1:]
		}
		// strip source route
		if k := strings.IndexByte(s, ':'); k >= 0 && strings.HasPrefix(s, "@") {
			s = s[k+1:]
		}
	}
	s = strings.TrimSpace(s)
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t") && !strings.HasPrefix(s, "\"") {
		return parsedAddr{raw: raw, local: strings.TrimSpace(raw)}
	}
	local := s[:at]
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		local = unquote(local[1 : len(local)-1])
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return parsedAddr{raw: raw, local: strings.TrimSpace(raw)}
		}
	}
	return parsedAddr{local: local, domain: s[at+1:], ok: true, raw: raw}
}

func unquote(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// addrValue extracts the address part; ok=false excludes the address.
func (r *run) addrValue(p parsedAddr, part addrPart) (string, bool) {
	if !p.ok {
		switch part {
		case apAll:
			return p.local, true
		default:
			return "", false
		}
	}
	switch part {
	case apAll:
		if p.domain == "" {
			return p.local, true
		}
		if needsQuote(p.local) {
			return strconv.Quote(p.local) + "@" + p.domain, true
		}
		return p.local + "@" + p.domain, true
	case apLocal:
		return p.local, true
	case apDomain:
		return p.domain, true
	case apUser, apDetail:
		delims := "+"
		if d, ok := r.config("recipient_delimiter"); ok {
			delims = d
		}
		idx := -1
		if delims != "" {
			idx = strings.IndexAny(p.local, delims)
		}
		if part == apUser {
			if idx < 0 {
				return p.local, true
			}
			return p.local[:idx], true
		}
		if idx < 0 {
			return "", false
		}
		return p.local[idx+1:], true
	}
	return "", false
}

type addressTest struct {
	names  []strv
	cnames []string
	m      *matcher
	part   addrPart
	index  int
	last   bool
	mime   *mimeOpts
}

func (t *addressTest) eval(r *run) (bool, error) {
	names := t.cnames
	if names == nil {
		names = r.expandList(t.names)
	}
	if t.mime != nil {
		return r.mimeAddressTest(t, names)
	}
	return t.m.match(r, r.addressValues(r.headers(), names, t.part, t.index, t.last))
}

func (r *run) addressValues(hs []Header, names []string, part addrPart, index int, last bool) []string {
	var vals []string
	for _, nm := range names {
		var hvBuf [4]string
		hv := hvBuf[:0]
		for i := range hs {
			if strings.EqualFold(hs[i].Name, nm) {
				hv = append(hv, hs[i].Value)
			}
		}
		hv = selectIndex(hv, index, last)
		for _, h := range hv {
			pl := r.env.Message.addresses(h)
			if len(pl) == 0 && part == apAll {
				vals = append(vals, "")
			}
			for _, p := range pl {
				if !p.ok {
					p.local = decodeHeader(p.local)
				}
				if v, ok := r.addrValue(p, part); ok {
					vals = append(vals, v)
				}
			}
		}
	}
	return vals
}

var addressHeaders = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true, "bcc": true,
	"resent-from": true, "resent-sender": true, "resent-to": true, "resent-cc": true, "resent-bcc": true,
	"return-path": true, "disposition-notification-to": true, "delivered-to": true,
	"envelope-to": true, "x-original-to": true, "original-recipient": true, "resent-reply-to": true,
	"errors-to": true, "mail-followup-to": true, "mail-reply-to": true, "approved": true, "x-envelope-to": true,
	"followup-to": true, "x-beenthere": true,
}

func compileAddress(c *compiler, n *testNode, a *argp) test {
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if !c.stdTag(a, t, &ms, stdMatch|stdAddr|stdIndex|stdMime|stdMimeAny) {
			a.unknownTag(t)
		}
	}
	c.checkMime(a, n, &ms)
	names := a.strList("header list")
	keys := a.strList("key list")
	if a.failed {
		return nil
	}
	for _, nm := range names {
		if nm.isConst() && !addressHeaders[strings.ToLower(nm.lit)] && !strings.HasPrefix(strings.ToLower(nm.lit), "x-") {
			if !validHeaderName(nm.lit) {
				a.fail(n.pos, "specified header field name '%s' is invalid", nm.lit)
				return nil
			}
			if !addressHeaders[strings.ToLower(nm.lit)] {
				a.fail(n.pos, "specified header '%s' is not allowed for the address test (not known to contain addresses)", nm.lit)
				return nil
			}
		}
	}
	m := c.finishMatch(a, &ms, keys)
	if m == nil {
		return nil
	}
	return &addressTest{names: names, cnames: constList(names), m: m, part: ms.addrPart, index: ms.index, last: ms.last, mime: ms.mime}
}

type envelopeTest struct {
	parts []strv
	m     *matcher
	part  addrPart
}

func (r *run) envelopeValues(parts []string, ap addrPart) []string {
	var vals []string
	for _, p := range parts {
		var v string
		switch strings.ToLower(p) {
		case "from":
			v = r.env.Envelope.From
			if v == "" || v == "<>" {
				if ap == apAll || ap == apLocal || ap == apDomain || ap == apUser {
					vals = append(vals, "")
				}
				continue
			}
		case "to":
			v = r.env.Envelope.To
		case "orig_to":
			v = r.env.Envelope.OrigTo
		case "auth":
			v = r.env.Envelope.Auth
			if v == "" {
				continue
			}
		default:
			continue
		}
		if v == "" {
			continue
		}
		pa, ok := parseSMTPPath(v)
		if !ok {
			continue
		}
		if pa.local == "" && pa.domain == "" {
			if ap == apAll || ap == apLocal || ap == apDomain || ap == apUser {
				vals = append(vals, "")
			}
			continue
		}
		if x, ok := r.addrValue(pa, ap); ok {
			vals = append(vals, x)
		}
	}
	return vals
}

func (t *envelopeTest) eval(r *run) (bool, error) {
	return t.m.match(r, r.envelopeValues(r.expandList(t.parts), t.part))
}

func compileEnvelope(c *compiler, n *testNode, a *argp) test {
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if !c.stdTag(a, t, &ms, stdMatch|stdAddr) {
			a.unknownTag(t)
		}
	}
	parts := a.strList("envelope part")
	keys := a.strList("key list")
	if a.failed {
		return nil
	}
	for _, p := range parts {
		if p.isConst() {
			switch strings.ToLower(p.lit) {
			case "from", "to", "auth", "orig_to":
			default:
				a.fail(n.pos, "specified envelope part '%s' is not supported by the envelope test", p.lit)
				return nil
			}
		}
	}
	m := c.finishMatch(a, &ms, keys)
	if m == nil {
		return nil
	}
	return &envelopeTest{parts: parts, m: m, part: ms.addrPart}
}

// ---- actions

type keepCmd struct{ flags *flagsArg }

func (k keepCmd) exec(r *run) error {
	a := &Action{Type: "keep", Mailbox: "INBOX"}
	a.Flags = r.actionFlags(k.flags)
	return r.addAction(a, true)
}

func compileKeep(c *compiler, n *cmdNode, a *argp) cmd {
	var k keepCmd
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "flags" && c.has("imap4flags") {
			k.flags = &flagsArg{list: a.strList("flags")}
			continue
		}
		a.unknownTag(t)
	}
	return k
}

type discardCmd struct{}

func (discardCmd) exec(r *run) error {
	return r.addAction(&Action{Type: "discard"}, true)
}

type fileintoCmd struct {
	mailbox    strv
	copy       bool
	create     bool
	flags      *flagsArg
	specialuse strv
	hasSU      bool
}

func (f *fileintoCmd) exec(r *run) error {
	mb := r.expand(&f.mailbox)
	if !validUTF8(mb) {
		return r.runtimeErr("fileinto command: invalid folder name '%s' specified (invalid UTF-8)", mb)
	}
	a := &Action{Type: "fileinto", Mailbox: mb, Copy: f.copy, Create: f.create}
	if f.hasSU {
		a.SpecialUse = r.expand(&f.specialuse)
	}
	a.Flags = r.actionFlags(f.flags)
	return r.addAction(a, !f.copy)
}

func compileFileinto(c *compiler, n *cmdNode, a *argp) cmd {
	f := &fileintoCmd{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		switch {
		case t.tag == "copy" && c.has("copy"):
			f.copy = true
		case t.tag == "create" && c.has("mailbox"):
			f.create = true
		case t.tag == "flags" && c.has("imap4flags"):
			f.flags = &flagsArg{list: a.strList("flags")}
		case t.tag == "specialuse" && c.has("special-use"):
			f.specialuse, _ = a.str("special-use flag")
			f.hasSU = true
		default:
			a.unknownTag(t)
		}
	}
	f.mailbox, _ = a.str("folder")
	if a.failed {
		return nil
	}
	if f.mailbox.isConst() && !validUTF8(f.mailbox.lit) {
		a.fail(n.pos, "fileinto command: invalid folder name '%s' specified (invalid UTF-8)", f.mailbox.lit)
		return nil
	}
	if f.hasSU && f.specialuse.isConst() && !validSpecialUseFlag(f.specialuse.lit) {
		a.fail(n.pos, "fileinto command: invalid special-use flag '%s' specified", f.specialuse.lit)
		return nil
	}
	return f
}

type redirectCmd struct {
	addr strv
	copy bool
}

func (c *redirectCmd) exec(r *run) error {
	addr := r.expand(&c.addr)
	norm, ok := normalizeAddress(addr)
	if !ok {
		return r.runtimeErr("specified redirect address '%s' is invalid", addr)
	}
	return r.addAction(&Action{Type: "redirect", Address: norm, Copy: c.copy}, !c.copy)
}

// normalizeAddress validates a single mailbox address and returns local@domain.
func normalizeAddress(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "\"") && strings.Contains(s, "<") != strings.HasSuffix(s, ">") {
		return "", false // unbalanced angle brackets
	}
	// tolerate whitespace around the addr-spec parts, as Pigeonhole does
	if i := strings.LastIndexByte(s, '<'); i >= 0 && strings.HasSuffix(s, ">") {
		inner := strings.TrimSpace(s[i+1 : len(s)-1])
		s = s[:i] + "<" + collapseAt(inner) + ">"
	} else if !strings.HasPrefix(s, "\"") {
		s = collapseAt(s)
	}
	if s == "" {
		return "", false
	}
	list := parseAddressList(s)
	if len(list) != 1 || !list[0].ok {
		return "", false
	}
	p := list[0]
	if strings.ContainsAny(p.domain, " \t<>()[],;:\"") && !strings.HasPrefix(p.domain, "[") {
		return "", false
	}
	if strings.ContainsAny(p.local, " \t<>()[],;:@") && !strings.HasPrefix(list[0].raw, "\"") {
		return "", false
	}
	local := p.local
	if needsQuote(local) {
		local = strconv.Quote(local)
	}
	return local + "@" + p.domain, true
}

func needsQuote(l string) bool {
	if l == "" {
		return true
	}
	for i := 0; i < len(l); i++ {
		ch := l[i]
		if ch <= 32 || ch >= 127 || strings.IndexByte("()<>[]:;@\\,\"", ch) >= 0 {
			return true
		}
	}
	return strings.HasPrefix(l, ".") || strings.HasSuffix(l, ".") || strings.Contains(l, "..")
}

func compileRedirect(c *compiler, n *cmdNode, a *argp) cmd {
	rc := &redirectCmd{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "copy" && c.has("copy") {
			rc.copy = true
			continue
		}
		a.unknownTag(t)
	}
	rc.addr, _ = a.str("address")
	if a.failed {
		return nil
	}
	if rc.addr.isConst() {
		if _, ok := normalizeAddress(rc.addr.lit); !ok {
			a.fail(n.pos, "specified redirect address '%s' is invalid", rc.addr.lit)
			return nil
		}
	}
	return rc
}

// parseSMTPPath parses an SMTP (reverse-)path, with or without angle
// brackets and with an optional source route. "<>" is the null path
// (empty local and domain). A path without '@' is a bare local part.
func parseSMTPPath(v string) (parsedAddr, bool) {
	s := strings.TrimSpace(v)
	if strings.HasPrefix(s, "<") != strings.HasSuffix(s, ">") {
		return parsedAddr{}, false
	}
	if strings.HasPrefix(s, "<") {
		s = s[1 : len(s)-1]
		if strings.ContainsAny(s, "<>") {
			return parsedAddr{}, false
		}
	}
	if s == "" {
		return parsedAddr{ok: true}, true
	}
	if s[0] == '@' {
		colon := strings.IndexByte(s, ':')
		if colon < 0 {
			return parsedAddr{}, false
		}
		for _, d := range strings.Split(s[:colon], ",") {
			if !strings.HasPrefix(d, "@") || !validSMTPDomain(d[1:], true) {
				return parsedAddr{}, false
			}
		}
		s = s[colon+1:]
	}
	var local, domain string
	if strings.HasPrefix(s, "\"") {
		end := -1
		for i := 1; i < len(s); i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == '"' {
				end = i
				break
			}
		}
		if end < 0 {
			return parsedAddr{}, false
		}
		local = unquote(s[1:end])
		rest := s[end+1:]
		if rest == "" {
			return parsedAddr{local: local, ok: true}, true
		}
		if rest[0] != '@' {
			return parsedAddr{}, false
		}
		domain = rest[1:]
	} else {
		at := strings.LastIndexByte(s, '@')
		if at < 0 {
			local = s
		} else {
			local, domain = s[:at], s[at+1:]
			if domain == "" {
				return parsedAddr{}, false
			}
		}
		if local == "" {
			return parsedAddr{}, false
		}
		for i := 0; i < len(local); i++ {
			c := local[i]
			if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>[]:;@\\,\"", c) >= 0 {
				return parsedAddr{}, false
			}
		}
	}
	if domain != "" && !validSMTPDomain(domain, false) {
		return parsedAddr{}, false
	}
	return parsedAddr{local: local, domain: domain, ok: true, raw: v}, true
}

func validSMTPDomain(d string, strict bool) bool {
	if d == "" {
		return false
	}
	if d[0] == '[' {
		return d[len(d)-1] == ']'
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// collapseAt removes whitespace around '@' in an addr-spec.
func collapseAt(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(s[:at]) + "@" + strings.TrimSpace(s[at+1:])
}
