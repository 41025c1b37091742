package sieve

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"sync"

	"github.com/emersion/go-message/charset"
)

// mimePart is one node of the MIME tree. Every byte slice of a part points
// into the message's own buffer: a deeply nested message must not cost a copy
// (or a line index) of its body per nesting level.
type mimePart struct {
	headers  []Header
	body     []byte // raw body of this part (for multiparts: whole raw body)
	ctype    string // lower-case type/subtype
	params   map[string]string
	children []*mimePart
	preamble []byte
	epilogue []byte
	parent   *mimePart

	// Executions of one compiled script share the Message (and so its parts)
	// across goroutines.
	decodeOnce sync.Once
	decoded    []byte
}

const maxMimeDepth = 32

// maxMimeParts bounds the parts of one message, as Dovecot's message parser
// (which Pigeonhole uses) stops at MESSAGE_PARSER_DEFAULT_MAX_TOTAL_MIME_PARTS:
// past it, the rest of a multipart is not split further.
const maxMimeParts = 10000

const maxForeverypartNesting = 4

func (m *Message) mimeRoot() *mimePart {
	m.mimeOnce.Do(func() {
		budget := maxMimeParts - 1
		m.root = parseMimePart(m.headers, m.body, nil, 0, "text/plain", &budget)
	})
	return m.root
}

// parseMimePart builds the part tree. budget counts the parts that may still
// be created.
func parseMimePart(hs []Header, body []byte, parent *mimePart, depth int, deftype string, budget *int) *mimePart {
	p := &mimePart{headers: hs, body: body, parent: parent}
	ct := ""
	for _, h := range hs {
		if strings.EqualFold(h.Name, "Content-Type") {
			ct = unfold(h.Value)
			break
		}
	}
	p.ctype = deftype
	p.params = map[string]string{}
	if ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil && mt == "" {
			// lenient: take what is before ';'
			mt = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
		}
		if strings.Count(mt, "/") == 1 && !strings.HasPrefix(mt, "/") && !strings.HasSuffix(mt, "/") && !strings.ContainsAny(mt, " \t") {
			p.ctype = strings.ToLower(mt)
		} else {
			p.ctype = "application/octet-stream"
		}
		for k, v := range params {
			p.params[strings.ToLower(k)] = v
		}
	}
	if depth >= maxMimeDepth || *budget <= 0 {
		return p
	}
	if strings.HasPrefix(p.ctype, "multipart/") {
		b := p.params["boundary"]
		if b != "" {
			def := "text/plain"
			if p.ctype == "multipart/digest" {
				def = "message/rfc822"
			}
			pre, parts, epi := splitMultipart(body, b, *budget)
			p.preamble, p.epilogue = pre, epi
			*budget -= len(parts)
			for _, raw := range parts {
				chs, cb := parseHeaderBlock(raw)
				p.children = append(p.children, parseMimePart(chs, cb, p, depth+1, def, budget))
			}
		}
	} else if p.ctype == "message/rfc822" {
		*budget--
		chs, cb := parseHeaderBlock(body)
		p.children = append(p.children, parseMimePart(chs, cb, p, depth+1, "text/plain", budget))
	}
	return p
}

// splitMultipart cuts body at the delimiter lines of boundary into at most
// max parts. It finds the delimiters with bytes.Index and returns subslices
// of body, so splitting costs one scan and no copies.
func splitMultipart(body []byte, boundary string, max int) (pre []byte, parts [][]byte, epi []byte) {
	delim := []byte("--" + boundary)
	// stripNL drops the line break that belongs to the delimiter after it.
	stripNL := func(b []byte) []byte {
		b = bytes.TrimSuffix(b, []byte("\n"))
		return bytes.TrimSuffix(b, []byte("\r"))
	}
	seg := 0 // start of the current preamble or part
	in := false
	for from := 0; from < len(body); {
		i := bytes.Index(body[from:], delim)
		if i < 0 {
			break
		}
		s := from + i
		if s > 0 && body[s-1] != '\n' {
			from = s + 1
			continue
		}
		end := len(body) // end of the line, after its '\n'
		if nl := bytes.IndexByte(body[s:], '\n'); nl >= 0 {
			end = s + nl + 1
		}
		from = end
		line := bytes.TrimRight(body[s:end], " \t\r\n")
		if len(line) < len(delim) {
			continue // the boundary's own trailing blanks were trimmed away
		}
		rest := line[len(delim):]
		closing := bytes.Equal(rest, []byte("--"))
		if len(rest) != 0 && !closing {
			continue
		}
		if in {
			if len(parts) == max {
				// Out of parts: what is left belongs to the last one.
				return pre, parts, nil
			}
			parts = append(parts, stripNL(body[seg:s]))
		} else {
			pre = stripNL(body[seg:s])
		}
		if closing {
			return pre, parts, body[end:]
		}
		in = true
		seg = end
	}
	if !in {
		return body[seg:], nil, nil
	}
	if seg < len(body) && len(parts) < max {
		parts = append(parts, body[seg:])
	}
	return pre, parts, nil
}

// all returns this part and its descendants in depth-first order.
func (p *mimePart) all(out []*mimePart) []*mimePart {
	out = append(out, p)
	for _, c := range p.children {
		out = c.all(out)
	}
	return out
}

// decodedText returns the body decoded from its transfer encoding and
// converted to UTF-8.
func (p *mimePart) decodedText() []byte {
	p.decodeOnce.Do(func() { p.decoded = p.decode() })
	return p.decoded
}

func (p *mimePart) decode() []byte {
	cte := ""
	for _, h := range p.headers {
		if strings.EqualFold(h.Name, "Content-Transfer-Encoding") {
			cte = strings.ToLower(strings.TrimSpace(unfold(h.Value)))
		}
	}
	var data []byte
	switch cte {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, p.body)
		d := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, _ := base64.StdEncoding.Decode(d, clean)
		data = d[:n]
	case "quoted-printable":
		d, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(p.body)))
		data = d
	case "", "7bit", "8bit", "binary":
		data = p.body
	default:
		// unknown transfer encoding: content is opaque
		data = nil
	}
	if cs := p.params["charset"]; cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		if rd, err := charset.Reader(cs, bytes.NewReader(data)); err == nil {
			if d, err := io.ReadAll(rd); err == nil {
				data = d
			}
		}
	}
	return data
}

// ---- body (RFC 5173)

type bodyTransform int

const (
	btText bodyTransform = iota
	btRaw
	btContent
)

type bodyTest struct {
	transform bodyTransform
	content   []strv
	m         *matcher
}

func contentTypeMatches(ct string, specs []string) bool {
	for _, s := range specs {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			return true
		}
		if strings.Count(s, "/") > 1 || strings.HasSuffix(s, "/") || strings.HasPrefix(s, "/") {
			continue
		}
		if strings.Contains(s, "/") {
			if s == ct {
				return true
			}
		} else if strings.HasPrefix(ct, s+"/") {
			return true
		}
	}
	return false
}

func (t *bodyTest) eval(r *run) (bool, error) {
	msg := r.env.Message
	if msg.body == nil {
		return false, nil
	}
	var vals []string
	switch t.transform {
	case btRaw:
		vals = []string{string(msg.body)}
	case btText, btContent:
		specs := []string{"text"}
		if t.transform == btContent {
			specs = r.expandList(t.content)
		}
		for _, p := range msg.mimeRoot().all(nil) {
			if strings.HasPrefix(p.ctype, "multipart/") {
				if t.transform == btContent && contentTypeMatches(p.ctype, specs) {
					// multipart: only the prologue and epilogue are searched
					vals = append(vals, string(p.preamble), string(p.epilogue))
				}
				continue
			}
			if p.ctype == "message/rfc822" {
				if t.transform == btContent && contentTypeMatches(p.ctype, specs) {
					// Past the nesting or part limit the enclosed message
					// was not parsed into a child: read its header here.
					var hs []Header
					if len(p.children) > 0 {
						hs = p.children[0].headers
					} else {
						hs, _ = parseHeaderBlock(p.body)
					}
					hb := renderMessage(hs, nil)
					vals = append(vals, string(hb[:len(hb)-2]))
				}
				continue
			}
			isXHTML := p.ctype == "application/xhtml+xml"
			if !contentTypeMatches(p.ctype, specs) && !(t.transform == btText && isXHTML) {
				continue
			}
			txt := string(p.decodedText())
			if t.transform == btText && (p.ctype == "text/html" || isXHTML) {
				txt = htmlToText(txt)
			}
			vals = append(vals, txt)
		}
	}
	return t.m.match(r, vals)
}

func htmlToText(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '<':
			in = true
		case s[i] == '>' && in:
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func compileBody(c *compiler, n *testNode, a *argp) test {
	bt := &bodyTest{}
	var ms matchSpec
	tset := false
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		switch t.tag {
		case "raw", "text", "content":
			if tset {
				a.fail(t.pos, "multiple body transforms specified for the body test")
				continue
			}
			tset = true
			switch t.tag {
			case "raw":
				bt.transform = btRaw
			case "text":
				bt.transform = btText
			case "content":
				bt.transform = btContent
				bt.content = a.strList("content types")
			}
		default:
			if !c.stdTag(a, t, &ms, stdMatch) {
				a.unknownTag(t)
			}
		}
	}
	keys := a.strList("key list")
	bt.m = c.finishMatch(a, &ms, keys)
	if bt.m == nil {
		return nil
	}
	bt.m.setMV = false
	return bt
}

// ---- mime tags for header / address / exists (RFC 5703)

type mimeOpts struct {
	anychild bool
	option   string // "", type, subtype, contenttype, param
	params   []strv
}

func (c *compiler) mimeTag(a *argp, t arg, ms *matchSpec, fl stdFlags) bool {
	if ms.mime == nil {
		ms.mime = &mimeOpts{}
	}
	mo := ms.mime
	switch t.tag {
	case "mime":
		return true
	case "anychild":
		mo.anychild = true
	case "type", "subtype", "contenttype", "param":
		if a.what != "header test" {
			return false
		}
		if mo.option != "" {
			a.fail(t.pos, "multiple :type/:subtype/:contenttype/:param options for the %s", a.what)
			return true
		}
		mo.option = t.tag
		if t.tag == "param" {
			mo.params = a.strList("parameter names")
		}
	}
	return true
}

func (c *compiler) checkMime(a *argp, n *testNode, ms *matchSpec) {
	if ms.mime == nil {
		return
	}
	hasMime := false
	for _, x := range n.args {
		if x.kind == aTag && x.tag == "mime" {
			hasMime = true
		}
	}
	if !hasMime {
		a.fail(n.pos, "the :anychild/:type/:subtype/:contenttype/:param tags of the %s require the :mime tag", a.what)
		ms.mime = nil
		return
	}
}

// parts returns the MIME parts a :mime test looks at.
func (r *run) mimeParts(mo *mimeOpts) []*mimePart {
	var cur *mimePart
	if r.mime != nil {
		cur = r.mime.part
	} else {
		cur = r.env.Message.mimeRoot()
	}
	if mo.anychild {
		return cur.all(nil)
	}
	return []*mimePart{cur}
}

func (r *run) partHeaders(p *mimePart) []Header {
	if p.parent == nil && r.st.headersEdited {
		return r.st.headers
	}
	return p.headers
}

func (r *run) mimeExists(mo *mimeOpts, names []string) (bool, error) {
	parts := r.mimeParts(mo)
	for _, nm := range names {
		found := false
		for _, p := range parts {
			if len(headerValues(r.partHeaders(p), nm)) > 0 {
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

func (r *run) mimeHeaderTest(t *headerTest, names []string) (bool, error) {
	mo := t.mime
	var vals []string
	for _, p := range r.mimeParts(mo) {
		hs := r.partHeaders(p)
		for _, nm := range names {
			hv := selectIndex(headerValues(hs, nm), t.index, t.last)
			for _, raw := range hv {
				v := decodeHeader(raw)
				switch mo.option {
				case "":
					vals = append(vals, v)
				default:
					if !strings.EqualFold(nm, "content-type") && !strings.EqualFold(nm, "content-disposition") {
						vals = append(vals, v)
						continue
					}
					mt, params, err := mime.ParseMediaType(v)
					if err != nil && mt == "" {
						mt = strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
					}
					mt = strings.ToLower(mt)
					typ, sub, _ := strings.Cut(mt, "/")
					switch mo.option {
					case "type":
						vals = append(vals, typ)
					case "subtype":
						vals = append(vals, sub)
					case "contenttype":
						vals = append(vals, mt)
					case "param":
						for _, pn := range r.expandList(mo.params) {
							for k, pv := range params {
								if strings.EqualFold(k, pn) {
									vals = append(vals, pv)
								}
							}
						}
					}
				}
			}
		}
	}
	return t.m.match(r, vals)
}

func (r *run) mimeAddressTest(t *addressTest, names []string) (bool, error) {
	var vals []string
	for _, p := range r.mimeParts(t.mime) {
		vals = append(vals, r.addressValues(r.partHeaders(p), names, t.part, t.index, t.last)...)
	}
	return t.m.match(r, vals)
}

// ---- foreverypart / break / extracttext

type mimeIter struct {
	part   *mimePart
	name   string
	parent *mimeIter
}

type foreverypartCmd struct {
	name string
	body []cmd
}

func (c *foreverypartCmd) exec(r *run) error {
	var root *mimePart
	if r.mime != nil {
		root = r.mime.part
	} else {
		root = r.env.Message.mimeRoot()
	}
	parts := root.all(nil)
	if r.mime != nil {
		parts = parts[1:]
	}
	saved := r.mime
	depth := 0
	for m := saved; m != nil; m = m.parent {
		depth++
	}
	if depth >= maxForeverypartNesting {
		return r.runtimeErr("the nesting of foreverypart loops exceeds the limit (%d)", maxForeverypartNesting)
	}
	defer func() { r.mime = saved }()
	for _, p := range parts {
		r.mime = &mimeIter{part: p, name: c.name, parent: saved}
		err := execBlock(r, c.body)
		if be, ok := err.(*breakErr); ok {
			if be.name == "" || be.name == c.name {
				return nil
			}
			return err
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func compileForeverypart(c *compiler, n *cmdNode, a *argp) cmd {
	fc := &foreverypartCmd{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "name" {
			s, _ := a.str("name")
			fc.name = s.lit
			continue
		}
		a.unknownTag(t)
	}
	if a.failed {
		return nil
	}
	if len(c.loopNames) >= maxForeverypartNesting {
		a.fail(n.pos, "the nesting of foreverypart loops exceeds the limit (%d)", maxForeverypartNesting)
		return nil
	}
	c.loopNames = append(c.loopNames, fc.name)
	c.nestDepth++
	fc.body = c.block(n.block)
	c.nestDepth--
	c.loopNames = c.loopNames[:len(c.loopNames)-1]
	return fc
}

func compileBreak(c *compiler, n *cmdNode, a *argp) cmd {
	be := &breakErr{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "name" {
			s, _ := a.str("name")
			be.name = s.lit
			continue
		}
		a.unknownTag(t)
	}
	if a.failed {
		return nil
	}
	if len(c.loopNames) == 0 {
		a.fail(n.pos, "the break command is not placed inside a foreverypart loop")
		return nil
	}
	if be.name != "" {
		found := false
		for _, nm := range c.loopNames {
			if nm == be.name {
				found = true
			}
		}
		if !found {
			a.fail(n.pos, "the break command references a foreverypart loop named '%s' that does not exist", be.name)
			return nil
		}
	}
	return breakCmd{be}
}

type breakCmd struct{ e *breakErr }

func (b breakCmd) exec(*run) error { return b.e }

type extracttextCmd struct {
	name  string
	first int
	mods  []modifier
}

func (c *extracttextCmd) exec(r *run) error {
	if r.mime == nil {
		return r.runtimeErr("extracttext action used outside foreverypart loop")
	}
	p := r.mime.part
	v := ""
	if strings.HasPrefix(p.ctype, "text/") {
		v = string(p.decodedText())
		if p.ctype == "text/html" {
			v = htmlToText(v)
		}
	}
	if c.first > 0 {
		rs := []rune(v)
		if len(rs) > c.first {
			v = string(rs[:c.first])
		}
	}
	for _, m := range c.mods {
		v = applyModifier(m, v)
	}
	r.setVar(c.name, v)
	return nil
}

func compileExtracttext(c *compiler, n *cmdNode, a *argp) cmd {
	ec := &extracttextCmd{first: -1}
	var mods []modPrec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "first" {
			v, _ := a.num("first")
			ec.first = int(v)
			continue
		}
		if !c.modifierTag(a, t, &mods) {
			a.unknownTag(t)
		}
	}
	if a.failed {
		return nil
	}
	if a.i >= len(a.args) || a.args[a.i].kind != aString {
		a.str("varname")
		return nil
	}
	nm, ok := c.varName(a, a.args[a.i].pos, strv{}, a.args[a.i].strs[0])
	a.i++
	if !ok {
		return nil
	}
	if len(c.loopNames) == 0 {
		a.fail(n.pos, "the extracttext command is not placed inside a foreverypart loop")
		return nil
	}
	ec.name = nm
	if len(mods) > 0 {
		ec.mods = byPrecedence(mods)
	}
	return ec
}
