package message

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// maxLine is RFC 5322's line limit (998 + CRLF).
const maxLine = 998

// parse builds a Message from the scanned prefix of a raw message.
func parse(raw []byte, l Limits) *Message {
	m := &Message{}
	if bytes.IndexByte(raw, '\r') >= 0 {
		raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	}
	// An mbox "From " line is not a header field.
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		} else {
			raw = nil
		}
	}
	head, body, ok := splitHeader(raw)
	if !ok {
		m.addAnomaly(AnomalyNoHeader)
	}
	m.RawHeader = string(head)
	m.Header = parseHeader(m, head)
	if len(m.Header) == 0 {
		m.addAnomaly(AnomalyNoHeader)
	}
	m.RawBody = string(body)
	if bytes.IndexByte(body, 0) >= 0 {
		m.addAnomaly(AnomalyBodyNUL)
	}
	if hasLongLine(body) {
		m.addAnomaly(AnomalyLongLine)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		m.addAnomaly(AnomalyEmptyBody)
	}
	w := walker{m: m, lim: l}
	w.entity(m.Header, body, 0, "")
	if w.multipart && !m.Header.Has("MIME-Version") {
		m.addAnomaly(AnomalyNoMIMEVersion)
	}
	var text strings.Builder
	for _, p := range m.Parts {
		if p.Text != "" && !p.IsAttachment() || p.Text != "" && p.Disposition == "inline" {
			if text.Len() > 0 {
				text.WriteByte('\n')
			}
			text.WriteString(p.Text)
		}
	}
	m.Text = text.String()
	collectTextURIs(m, l.MaxURIs)
	return m
}

func splitHeader(raw []byte) (head, body []byte, ok bool) {
	if len(raw) > 0 && raw[0] == '\n' {
		return nil, raw[1:], true
	}
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		return raw[:i+1], raw[i+2:], true
	}
	return raw, nil, false
}

func hasLongLine(b []byte) bool {
	for len(b) > maxLine {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return len(b) > maxLine
		}
		if i > maxLine {
			return true
		}
		b = b[i+1:]
	}
	return false
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// anyCharset decodes an encoded-word whatever its charset (bytes pass
// through), which tells a word in an unknown charset from a malformed one.
var anyCharset = &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil }}

// decodeWords decodes the RFC 2047 encoded-words of a header value one by
// one, as mime.WordDecoder.DecodeHeader does, except that a word in a charset
// we cannot convert stays as it is (bad reports one) instead of failing the
// whole value: one bogus word must not hide the others from the rules.
func decodeWords(v string) (out string, bad bool) {
	i := strings.Index(v, "=?")
	if i < 0 {
		return v, false
	}
	var b strings.Builder
	b.WriteString(v[:i])
	v = v[i:]
	betweenWords := false
	for {
		start := strings.Index(v, "=?")
		if start < 0 {
			break
		}
		end, ok := encodedWordEnd(v, start)
		var word, text string
		var err error
		if ok {
			word = v[start:end]
			if text, err = wordDecoder.Decode(word); err != nil {
				_, err2 := anyCharset.Decode(word)
				ok = err2 == nil
			}
		}
		if !ok {
			// Not an encoded-word after all: text, scanning on after "=?".
			b.WriteString(v[:start+2])
			v = v[start+2:]
			betweenWords = false
			continue
		}
		if err != nil {
			bad = true
		}
		// White space between two decoded words is dropped (RFC 2047 §6.2).
		if start > 0 && (!betweenWords || err != nil || strings.Trim(v[:start], " \t\r\n") != "") {
			b.WriteString(v[:start])
		}
		if err != nil {
			b.WriteString(word)
		} else {
			b.WriteString(text)
		}
		v = v[end:]
		betweenWords = err == nil
	}
	b.WriteString(v)
	return b.String(), bad
}

// encodedWordEnd returns the end of the "=?charset?e?text?=" starting at
// v[start]. The encoded text holds no '?' (RFC 2047 §5; mime.WordDecoder
// rejects a word with more than four), so the word ends at the first '?'
// after "e?", which must be followed by '='. Searching on to a later "?=",
// as mime.WordDecoder.DecodeHeader does, finds only words it then rejects,
// and made a value of many such openings cost quadratic time.
func encodedWordEnd(v string, start int) (int, bool) {
	cur := start + 2
	i := strings.IndexByte(v[cur:], '?')
	if i < 0 {
		return 0, false
	}
	cur += i + 1
	if len(v) < cur+len("Q??=") || v[cur+1] != '?' {
		return 0, false
	}
	cur += 2
	j := strings.IndexByte(v[cur:], '?')
	if j < 0 || cur+j+1 >= len(v) || v[cur+j+1] != '=' {
		return 0, false
	}
	return cur + j + 2, true
}

// parseHeader splits a header block into fields leniently: a line that is neither
// a field nor a continuation is recorded as an anomaly and skipped.
func parseHeader(m *Message, head []byte) Header {
	var h Header
	if bytes.IndexByte(head, 0) >= 0 || bytes.IndexByte(head, '\r') >= 0 {
		m.addAnomaly(AnomalyHeaderNUL)
	}
	lines := strings.Split(string(head), "\n")
	// cont[i] holds the continuation lines of h[i], joined once at the end:
	// appending each to the value copied it every time (quadratic).
	var cont [][]string
	for _, line := range lines {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(h) == 0 {
				if m != nil {
					m.addAnomaly(AnomalyBadHeader)
				}
				continue
			}
			cont[len(h)-1] = append(cont[len(h)-1], strings.TrimLeft(line, " \t"))
			continue
		}
		i := strings.IndexByte(line, ':')
		if i <= 0 || strings.ContainsAny(line[:i], " \t") && strings.TrimRight(line[:i], " \t") != line[:i] && strings.ContainsAny(strings.TrimRight(line[:i], " \t"), " \t") {
			if m != nil {
				m.addAnomaly(AnomalyBadHeader)
			}
			continue
		}
		name := strings.TrimRight(line[:i], " \t")
		h = append(h, Field{Name: name, Raw: strings.TrimLeft(line[i+1:], " \t")})
		cont = append(cont, nil)
	}
	for i := range h {
		if len(cont[i]) > 0 {
			h[i].Raw += " " + strings.Join(cont[i], " ")
		}
		h[i].Raw = strings.TrimRight(h[i].Raw, " \t")
		h[i].Decoded = decodeHeaderValue(m, h[i].Raw)
	}
	return h
}

// decodeHeaderValue decodes RFC 2047 words; raw 8-bit values (common in Japanese
// and Chinese spam) are decoded by sniffing, and always end up valid UTF-8.
func decodeHeaderValue(m *Message, v string) string {
	if strings.Contains(v, "=?") {
		d, bad := decodeWords(v)
		if bad && m != nil {
			m.addAnomaly(AnomalyBadCharset)
		}
		v = d
	}
	if isASCIIPrintable(v) {
		return v
	}
	if strings.Contains(v, "\x1b$") {
		if d, ok := decodeCharset("iso-2022-jp", []byte(v)); ok {
			return d
		}
	}
	if !utf8.ValidString(v) {
		if m != nil {
			m.addAnomaly(AnomalyRaw8bitHeader)
		}
		return sniffDecode([]byte(v))
	}
	return v
}

func isASCIIPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] == 0x1b {
			return false
		}
	}
	return true
}

// decodeCharset converts b from the named charset to valid UTF-8.
func decodeCharset(name string, b []byte) (string, bool) {
	name = strings.ToLower(strings.Trim(strings.TrimSpace(name), `"'`))
	switch name {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
		if utf8.Valid(b) {
			return string(b), true
		}
		return "", false
	}
	r, err := charset.Reader(name, bytes.NewReader(b))
	if err != nil {
		return "", false
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(len(b))*4+16))
	if err != nil {
		return "", false
	}
	return strings.ToValidUTF8(string(out), "\uFFFD"), true
}

// sniffDecode turns bytes of unknown charset into UTF-8: ISO-2022-JP by its
// escape sequences, UTF-8 if valid or mostly valid (damaged bytes become
// U+FFFD), otherwise Windows-1252 (a superset of Latin-1 that never fails).
func sniffDecode(b []byte) string {
	if bytes.Contains(b, []byte("\x1b$B")) || bytes.Contains(b, []byte("\x1b$@")) {
		if s, ok := decodeCharset("iso-2022-jp", b); ok {
			return s
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	if mostlyUTF8(b) {
		// One stray byte must not turn the whole text into 1252 mojibake
		// (and so out of reach of rules and Bayes).
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	s, _ := decodeCharset("windows-1252", b)
	return s
}

// mostlyUTF8 reports whether b holds more well-formed multi-byte UTF-8
// sequences than invalid bytes. 8-bit text in a legacy charset almost never
// forms a valid sequence, so it reads as Windows-1252 as before.
func mostlyUTF8(b []byte) bool {
	valid, invalid := 0, 0
	for len(b) > 0 {
		if b[0] < utf8.RuneSelf {
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			invalid++
		} else {
			valid++
		}
		b = b[n:]
	}
	return valid > invalid
}

type walker struct {
	m         *Message
	lim       Limits
	multipart bool
}

func contentType(m *Message, h Header) (mt string, params map[string]string) {
	ct := rawValue(h, "Content-Type")
	if ct == "" {
		return "", nil
	}
	mt, params, ok := parseMediaType(ct)
	if !ok {
		m.addAnomaly(AnomalyBadContentType)
	}
	return mt, params
}

// rawValue returns the first field named name as written. MIME parameters
// are read from it, not from the RFC 2047-decoded value: encoded-words are
// not allowed there (RFC 2047 §5), "=?" and "?=" are valid boundary
// characters (RFC 2046 §5.1.1), and a boundary decoded before the body was
// split matched no delimiter line, which left the message unscanned. File
// names, where Outlook writes encoded-words anyway, are decoded on their own.
func rawValue(h Header, name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Raw
		}
	}
	return ""
}

// parseMediaType is mime.ParseMediaType made lenient, for Content-Type and
// Content-Disposition: ok is false when the value is malformed. A value it
// refuses as a whole (one duplicate parameter, one unquoted value with a
// space) keeps type/subtype, and its other parameters are read by it one by
// one, so RFC 2231 forms (name*=utf-8'en'…, continuations *0 *1) decode as a
// mail client decodes them: a salvage that only knew plain name=value hid
// the file name of an attachment from the rules. Parameters it refuses even
// alone are kept as written (quotes trimmed), e.g. an unquoted boundary
// with special characters; of duplicates the last counts.
func parseMediaType(v string) (mt string, params map[string]string, ok bool) {
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return mt, params, true
	}
	segs := splitParams(v)
	mt = strings.ToLower(strings.TrimSpace(segs[0]))
	params = map[string]string{}
	var valid []string
	at := map[string]int{} // key → index in valid
	for _, seg := range segs[1:] {
		k, val, found := strings.Cut(strings.TrimSpace(seg), "=")
		if !found {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, _, err := mime.ParseMediaType("x/x;" + seg); err != nil {
			params[k] = strings.Trim(strings.TrimSpace(val), `"`)
			continue
		}
		if i, dup := at[k]; dup {
			valid[i] = seg
			continue
		}
		at[k] = len(valid)
		valid = append(valid, seg)
	}
	if len(valid) > 0 {
		if _, decoded, err := mime.ParseMediaType("x/x;" + strings.Join(valid, ";")); err == nil {
			for k, v := range decoded {
				params[k] = v
			}
		}
	}
	return mt, params, false
}

// splitParams splits a header value at the semicolons outside quoted
// strings.
func splitParams(v string) []string {
	var segs []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			segs = append(segs, v[start:i])
			start = i + 1
		}
	}
	return append(segs, v[start:])
}

// entity handles one MIME entity with header h and body b.
func (w *walker) entity(h Header, b []byte, depth int, parentType string) {
	m := w.m
	if len(m.Parts) >= w.lim.MaxParts {
		m.addAnomaly(AnomalyTooManyParts)
		return
	}
	mt, params := contentType(m, h)
	if mt == "" {
		mt = "text/plain"
		if parentType == "multipart/digest" {
			mt = "message/rfc822"
		}
	}
	if strings.HasPrefix(mt, "multipart/") {
		w.multipart = true
		if depth >= w.lim.MaxDepth {
			m.addAnomaly(AnomalyTooDeep)
			return
		}
		boundary := params["boundary"]
		if boundary == "" {
			m.addAnomaly(AnomalyMissingBoundary)
			w.leaf(h, "text/plain", params, b)
			return
		}
		parts, terminated := splitMultipart(b, boundary)
		if !terminated {
			m.addAnomaly(AnomalyUnterminated)
		}
		for _, p := range parts {
			ph, pb, _ := splitHeader(p)
			w.entity(parseHeader(m, ph), pb, depth+1, mt)
			if len(m.Parts) >= w.lim.MaxParts {
				if len(parts) > w.lim.MaxParts {
					m.addAnomaly(AnomalyTooManyParts)
				}
				return
			}
		}
		return
	}
	if mt == "message/rfc822" && depth < w.lim.MaxDepth {
		// An attached message: its own text counts (forwarded spam is spam).
		w.leaf(h, mt, params, nil)
		ih, ib, _ := splitHeader(w.decode(h, b))
		w.entity(parseHeader(m, ih), ib, depth+1, mt)
		return
	}
	w.leaf(h, mt, params, b)
}

// splitMultipart returns the bodies between boundary lines and whether the
// closing boundary was seen.
func splitMultipart(b []byte, boundary string) (parts [][]byte, terminated bool) {
	delim := []byte("--" + boundary)
	var cur []byte
	started := false
	start := 0
	for pos := 0; pos <= len(b); {
		end := bytes.IndexByte(b[pos:], '\n')
		if end < 0 {
			end = len(b)
		} else {
			end += pos
		}
		line := b[pos:end]
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t")
			if len(rest) == 0 || bytes.HasPrefix(rest, []byte("--")) {
				if started {
					cur = b[start:max(pos-1, start)]
					parts = append(parts, cur)
				}
				if len(rest) > 0 {
					return parts, true
				}
				started = true
				start = min(end+1, len(b))
			}
		}
		pos = end + 1
	}
	if started && start < len(b) {
		parts = append(parts, b[start:])
	}
	return parts, false
}

// decode undoes the Content-Transfer-Encoding leniently.
func (w *walker) decode(h Header, b []byte) []byte {
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	switch cte {
	case "", "7bit", "8bit", "binary":
		return b
	case "base64":
		out, bad := decodeBase64(b)
		if bad {
			w.m.addAnomaly(AnomalyBadBase64)
		}
		return out
	case "quoted-printable":
		out, bad := decodeQP(b)
		if bad {
			w.m.addAnomaly(AnomalyBadQP)
		}
		return out
	}
	w.m.addAnomaly(AnomalyBadCTE)
	return b
}

func decodeBase64(b []byte) ([]byte, bool) {
	clean := make([]byte, 0, len(b))
	bad := false
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		case c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\t':
		default:
			bad = true
		}
	}
	if r := len(clean) % 4; r == 1 {
		clean = clean[:len(clean)-1]
		bad = true
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		bad = true
	}
	return out[:n], bad
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func decodeQP(b []byte) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	bad := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' { // soft line break
			i++
			continue
		}
		if i+2 < len(b) {
			h1, ok1 := unhex(b[i+1])
			h2, ok2 := unhex(b[i+2])
			if ok1 && ok2 {
				out = append(out, h1<<4|h2)
				i += 2
				continue
			}
		}
		// Trailing whitespace before a soft break is allowed; anything else is kept verbatim.
		j := i + 1
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		if j < len(b) && b[j] == '\n' {
			i = j
			continue
		}
		bad = true
		out = append(out, c)
	}
	return out, bad
}

// leaf records a non-multipart entity as a Part, decoding text.
func (w *walker) leaf(h Header, mt string, params map[string]string, b []byte) {
	m := w.m
	p := &Part{ContentType: mt, Header: h, Charset: strings.ToLower(params["charset"])}
	p.Encoding = strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if d := rawValue(h, "Content-Disposition"); d != "" {
		disp, dp, _ := parseMediaType(d)
		p.Disposition = disp
		p.Filename = dp["filename"]
	}
	if p.Filename == "" {
		p.Filename = params["name"]
	}
	if p.Filename != "" {
		p.Filename = decodeHeaderValue(nil, p.Filename)
	}
	m.Parts = append(m.Parts, p)
	if b == nil {
		return
	}
	data := w.decode(h, b)
	p.Size = len(data)
	if !strings.HasPrefix(mt, "text/") || p.Disposition == "attachment" && p.Filename != "" {
		return
	}
	text, ok := decodeCharset(p.Charset, data)
	if !ok {
		if p.Charset != "" && !isKnownCharset(p.Charset) {
			m.addAnomaly(AnomalyBadCharset)
		}
		text = sniffDecode(data)
	}
	if strings.IndexByte(text, 0) >= 0 {
		text = strings.ReplaceAll(text, "\x00", "")
	}
	p.Source = text
	if mt == "text/html" {
		p.HTML = true
		text = htmlToText(m, text, w.lim.MaxURIs)
	}
	p.Text = text
}

func isKnownCharset(name string) bool {
	_, err := charset.Reader(name, bytes.NewReader(nil))
	return err == nil
}
