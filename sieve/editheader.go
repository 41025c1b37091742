package sieve

import (
	"mime"
	"strings"
)

// editheader (RFC 5293)

var defaultProtected = map[string]bool{"received": true, "auto-submitted": true}

// headerProtected reports whether name may not be added (del=false) or
// deleted (del=true), following Pigeonhole's sieve_editheader_protected,
// _forbid_add and _forbid_delete settings. Subject cannot be protected.
func (r *run) headerProtected(name string, del bool) bool {
	ln := strings.ToLower(name)
	if ln == "subject" {
		return false
	}
	if del && defaultProtected[ln] {
		return true
	}
	keys := []string{"sieve_editheader_protected", "sieve_editheader_forbid_add"}
	if del {
		keys[1] = "sieve_editheader_forbid_delete"
	}
	for _, k := range keys {
		if p, ok := r.config(k); ok {
			for _, f := range strings.Fields(p) {
				if strings.EqualFold(f, name) {
					return true
				}
			}
		}
	}
	return false
}

// maxAddedHeaderBytes bounds what addheader may add in one execution (all
// scripts of a run together). Each field is bounded by MaxHeaderSize, their
// number only by the step limit and the CPU time: enough for hundreds of
// megabytes of header per delivery. 100 KiB is Postfix's header_size_limit,
// past which the MTA would not keep the fields as header anyway.
const maxAddedHeaderBytes = 100 << 10

// editable returns a private copy of the header list for modification.
func (r *run) editableHeaders() []Header {
	if !r.st.headersEdited {
		hs := make([]Header, len(r.st.headers))
		copy(hs, r.st.headers)
		r.st.headers = hs
		r.st.headersEdited = true
	}
	return r.st.headers
}

type addheaderCmd struct {
	last  bool
	name  strv
	value strv
}

func sanitizeHeaderValue(v string) string {
	v = strings.TrimRight(v, "\r\n")
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' {
			continue
		}
		if c == '\n' {
			b.WriteString("\r\n")
			if i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t') {
				continue
			}
			b.WriteByte(' ')
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// encodeHeaderValue RFC 2047-encodes the non-ASCII words of a field value, as
// RFC 5293 section 4 requires of addheader (an 8-bit value is no valid field
// body) and Pigeonhole does: the run from the first to the last word holding
// 8-bit text becomes encoded-words, so the ASCII around it (an address in a
// structured field) stays as it was. Tests decode the value again.
func encodeHeaderValue(v string) string {
	first, last := -1, -1
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return v
	}
	ws := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for first > 0 && !ws(v[first-1]) {
		first--
	}
	end := last + 1
	for end < len(v) && !ws(v[end]) {
		end++
	}
	// Folding inside the run would otherwise be encoded as text; the
	// encoded-words are folded between themselves instead.
	enc := mime.QEncoding.Encode("utf-8", strings.ReplaceAll(v[first:end], "\r\n", ""))
	enc = strings.ReplaceAll(enc, "?= =?", "?=\r\n =?")
	return v[:first] + enc + v[end:]
}

func (c *addheaderCmd) exec(r *run) error {
	name := r.expand(&c.name)
	val := r.expand(&c.value)
	if !validHeaderName(name) {
		return r.runtimeErr("addheader action: specified field name '%s' is invalid", name)
	}
	if !validUTF8(val) || strings.IndexByte(val, 0) >= 0 {
		return r.runtimeErr("addheader action: specified value '%s' is invalid", val)
	}
	if r.headerProtected(name, false) {
		return nil
	}
	if n := r.lim.MaxHeaderSize; n > 0 && len(name)+len(val)+2 > n {
		return r.runtimeErr("addheader action: header field is too large")
	}
	h := Header{Name: name, Value: encodeHeaderValue(sanitizeHeaderValue(val))}
	r.st.addedHeaderBytes += fieldSize(h)
	if r.st.addedHeaderBytes > maxAddedHeaderBytes {
		return r.runtimeErr("addheader action: the header fields added exceed %d bytes in total", maxAddedHeaderBytes)
	}
	hs := r.editableHeaders()
	if c.last {
		hs = append(hs, h)
	} else {
		hs = append([]Header{h}, hs...)
	}
	r.st.headers = hs
	return nil
}

func atoiDefault(s string, d int) int {
	s = strings.TrimSpace(s)
	n := 0
	if s == "" {
		return d
	}
	mult := 1
	switch s[len(s)-1] {
	case 'k', 'K':
		mult, s = 1024, s[:len(s)-1]
	case 'm', 'M':
		mult, s = 1024*1024, s[:len(s)-1]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return d
		}
		n = n*10 + int(s[i]-'0')
	}
	return n * mult
}

func compileAddheader(c *compiler, n *cmdNode, a *argp) cmd {
	ac := &addheaderCmd{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "last" {
			ac.last = true
			continue
		}
		a.unknownTag(t)
	}
	ac.name, _ = a.str("field name")
	ac.value, _ = a.str("value")
	if a.failed {
		return nil
	}
	if ac.name.isConst() && !validHeaderName(ac.name.lit) {
		a.fail(n.pos, "addheader command: specified field name '%s' is invalid", ac.name.lit)
		return nil
	}
	if ac.value.isConst() && (!validUTF8(ac.value.lit) || strings.IndexByte(ac.value.lit, 0) >= 0) {
		a.fail(n.pos, "addheader command: specified value '%s' is invalid", strings.ReplaceAll(ac.value.lit, "\x00", "\\0"))
		return nil
	}
	if ac.value.isConst() && ac.name.isConst() && c.lim.MaxHeaderSize > 0 && len(ac.name.lit)+len(ac.value.lit)+2 > c.lim.MaxHeaderSize {
		a.fail(n.pos, "addheader command: specified header field is too large (max %d bytes)", c.lim.MaxHeaderSize)
		return nil
	}
	return ac
}

type deleteheaderCmd struct {
	name  strv
	m     *matcher // nil: delete all occurrences
	index int
	last  bool
}

func (c *deleteheaderCmd) exec(r *run) error {
	name := r.expand(&c.name)
	if !validHeaderName(name) {
		return r.runtimeErr("deleteheader action: specified field name '%s' is invalid", name)
	}
	if r.headerProtected(name, true) {
		return nil
	}
	hs := r.st.headers
	// positions of this field
	var pos []int
	for i := range hs {
		if strings.EqualFold(hs[i].Name, name) {
			pos = append(pos, i)
		}
	}
	if len(pos) == 0 {
		return nil
	}
	if c.index > 0 {
		if c.index > len(pos) {
			return nil
		}
		if c.last {
			pos = []int{pos[len(pos)-c.index]}
		} else {
			pos = []int{pos[c.index-1]}
		}
	}
	del := map[int]bool{}
	for _, p := range pos {
		if c.m == nil {
			del[p] = true
			continue
		}
		ok, err := c.m.match(r, []string{decodeHeader(hs[p].Value)})
		if err != nil {
			return err
		}
		if ok {
			del[p] = true
		}
	}
	if len(del) == 0 {
		return nil
	}
	hs = r.editableHeaders()
	out := hs[:0:0]
	for i := range hs {
		if !del[i] {
			out = append(out, hs[i])
		}
	}
	r.st.headers = out
	return nil
}

func compileDeleteheader(c *compiler, n *cmdNode, a *argp) cmd {
	dc := &deleteheaderCmd{}
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "index" {
			v, _ := a.num("index")
			if v == 0 && !a.failed {
				a.fail(t.pos, "the :index argument must be greater than zero")
			}
			ms.index = int(v)
			continue
		}
		if t.tag == "last" {
			ms.last, ms.lastPos = true, t.pos
			continue
		}
		if !c.stdTag(a, t, &ms, stdMatch) {
			a.unknownTag(t)
		}
	}
	dc.name, _ = a.str("field name")
	var keys []strv
	if a.more() {
		keys = a.strList("value patterns")
	}
	if a.failed {
		return nil
	}
	if ms.last && ms.index == 0 {
		a.fail(ms.lastPos, "the :last tag for the deleteheader command requires an :index tag")
		return nil
	}
	if dc.name.isConst() && !validHeaderName(dc.name.lit) {
		a.fail(n.pos, "deleteheader command: specified field name '%s' is invalid", dc.name.lit)
		return nil
	}
	if keys != nil {
		dc.m = c.finishMatch(a, &ms, keys)
		if dc.m == nil {
			return nil
		}
	}
	// Without value patterns a match type or comparator is accepted and
	// has no effect (RFC 5293 section 6; Pigeonhole accepts it too).
	dc.index, dc.last = ms.index, ms.last
	return dc
}
