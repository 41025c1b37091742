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
}

// Message is a parsed RFC 5322 message. It is safe for concurrent reads.
type Message struct {
	raw     []byte
	headers []Header
	body    []byte

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
	m.headers, m.body = parseHeaderBlock(raw)
	return m
}

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
	var hs []Header
	i := 0
	for i < len(raw) {
		// end of header?
		if raw[i] == '\n' {
			return hs, raw[i+1:]
		}
		if raw[i] == '\r' && i+1 < len(raw) && raw[i+1] == '\n' {
			return hs, raw[i+2:]
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
			return hs, raw[i:]
		}
		name := strings.TrimRight(string(line[:colon]), " \t")
		val := line[colon+1:]
		val = bytes.TrimLeft(val, " \t")
		val = bytes.TrimRight(val, "\r\n")
		hs = append(hs, Header{Name: name, Value: string(val)})
		i = j
	}
	return hs, nil
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
