package sieve

import (
	"bytes"
	"strings"
	"sync"
)

// Header is one header field in message order. Value is the raw field body
// (after the colon, leading whitespace removed, folding preserved, without
// the final line break).
type Header struct {
	Name  string
	Value string

	// start and end locate the field in the parsed message (name to final line
	// break), so a caller writing out an edited header can copy the fields
	// editheader left alone byte for byte; end == 0 for a field a script added.
	start, end int
}

// Span returns where the field lies in the message it was parsed from
// (Message.Raw()[start:end], final line break included); ok is false for a
// field that editheader added.
func (h Header) Span() (start, end int, ok bool) {
	return h.start, h.end, h.end > 0
}

// Message is a parsed RFC 5322 message. It is safe for concurrent reads.
type Message struct {
	raw       []byte
	headers   []Header
	headerEnd int
	body      []byte

	mimeOnce sync.Once
	root     *mimePart
	addrs    sync.Map // raw header value -> []parsedAddr
}

// addresses returns the parsed address list of a raw header value, cached
// per message (messages are shared read-only across executions).
func (m *Message) addresses(v string) []parsedAddr {
	if x, ok := m.addrs.Load(v); ok {
		return x.([]parsedAddr)
	}
	pl := parseAddressList(v)
	m.addrs.Store(v, pl)
	return pl
}

// NewMessage parses raw (CRLF or LF line endings). It never fails on
// malformed input: unparsable header lines end the header.
func NewMessage(raw []byte) *Message {
	m := &Message{raw: raw}
	m.headers, m.headerEnd, m.body = parseFields(raw, true)
	return m
}

// HeaderEnd returns the offset in Raw() just past the last header field the
// parser took: where the empty line, the first line that is not a header field,
// or the end of the message begins. Everything from there on is not part of
// Headers(), whatever an editheader script did.
func (m *Message) HeaderEnd() int { return m.headerEnd }

// Headers returns the header fields in order.
func (m *Message) Headers() []Header { return m.headers }

// Body returns the raw body (after the empty line).
func (m *Message) Body() []byte { return m.body }

// Raw returns the whole message as given.
func (m *Message) Raw() []byte { return m.raw }

// Size returns the message size in octets.
func (m *Message) Size() int { return len(m.raw) }

// parseHeaderBlock splits a header block into fields and returns the rest.
func parseHeaderBlock(raw []byte) ([]Header, []byte) {
	hs, _, body := parseFields(raw, false)
	return hs, body
}

// parseFields is parseHeaderBlock that also returns where the fields end and,
// with spans, records where each field lies in raw (only meaningful for the
// top-level message: a MIME part's offsets would point into another buffer).
func parseFields(raw []byte, spans bool) ([]Header, int, []byte) {
	var hs []Header
	i := 0
	for i < len(raw) {
		// end of header?
		if raw[i] == '\n' {
			return hs, i, raw[i+1:]
		}
		if raw[i] == '\r' && i+1 < len(raw) && raw[i+1] == '\n' {
			return hs, i, raw[i+2:]
		}
		// find the end of the field (including folded lines)
		j := i
		for {
			nl := bytes.IndexByte(raw[j:], '\n')
			if nl < 0 {
				j = len(raw)
				break
			}
			j += nl + 1
			if j < len(raw) && (raw[j] == ' ' || raw[j] == '\t') {
				continue
			}
			break
		}
		line := raw[i:j]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.ContainsAny(line[:colon], " \t\r\n") && !isWSPOnlyTail(line[:colon]) {
			// not a header line: treat the rest as body
			return hs, i, raw[i:]
		}
		name := strings.TrimRight(string(line[:colon]), " \t")
		val := line[colon+1:]
		val = bytes.TrimLeft(val, " \t")
		val = bytes.TrimRight(val, "\r\n")
		h := Header{Name: name, Value: string(val)}
		if spans {
			h.start, h.end = i, j
		}
		hs = append(hs, h)
		i = j
	}
	return hs, len(raw), nil
}

func isWSPOnlyTail(b []byte) bool {
	t := bytes.TrimRight(b, " \t")
	return len(t) > 0 && !bytes.ContainsAny(t, " \t\r\n")
}

// unfold removes CRLF folding and trailing whitespace from a raw value.
func unfold(v string) string {
	if strings.IndexByte(v, '\n') < 0 {
		return strings.TrimRight(v, " \t\r")
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			continue
		}
		b.WriteByte(c)
	}
	return strings.TrimRight(b.String(), " \t")
}

func headerValues(hs []Header, name string) []string {
	var out []string
	for i := range hs {
		if strings.EqualFold(hs[i].Name, name) {
			out = append(out, hs[i].Value)
		}
	}
	return out
}
