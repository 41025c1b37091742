// Package message is the spam engine's view of a mail message: header fields
// (raw and RFC 2047-decoded), the MIME tree flattened into parts, the visible text
// of every text part in UTF-8 (charsets via emersion/go-message/charset and
// golang.org/x/text, HTML converted to text), the URIs found in text and HTML
// (with the shown link text), and anomalies found while parsing.
//
// Parsing never fails on content: truncated or malformed MIME, unknown charsets,
// NULs and overlong lines become anomalies that rules score. Work and memory are
// bounded by Limits.
package message

import (
	"bytes"
	"io"
	"os"
	"strings"
)

// Anomalies found while parsing; rules see them through eval:mime_anomaly(NAME).
const (
	AnomalySizeCap         = "SIZE_CAP"              // message exceeded the hard size cap
	AnomalyNoHeader        = "NO_HEADER"             // no header/body separator or no fields
	AnomalyBadHeader       = "BAD_HEADER"            // a header line without a colon or name
	AnomalyHeaderNUL       = "HEADER_NUL"            // NUL or bare CR in the header
	AnomalyRaw8bitHeader   = "RAW_8BIT_HEADER"       // unencoded 8-bit bytes in a header
	AnomalyBodyNUL         = "BODY_NUL"              // NUL bytes in the body
	AnomalyLongLine        = "LONG_LINE"             // a line longer than RFC 5322's 998
	AnomalyMissingBoundary = "MIME_MISSING_BOUNDARY" // multipart without a boundary parameter
	AnomalyUnterminated    = "MIME_UNTERMINATED"     // multipart without its closing boundary
	AnomalyTooManyParts    = "MIME_TOO_MANY_PARTS"
	AnomalyTooDeep         = "MIME_TOO_DEEP"
	AnomalyBadCTE          = "MIME_BAD_CTE"     // unknown Content-Transfer-Encoding
	AnomalyBadBase64       = "MIME_BAD_BASE64"  // invalid base64 data
	AnomalyBadQP           = "MIME_BAD_QP"      // invalid quoted-printable
	AnomalyBadCharset      = "MIME_BAD_CHARSET" // unknown charset or undecodable bytes
	AnomalyBadContentType  = "MIME_BAD_CONTENT_TYPE"
	AnomalyNoMIMEVersion   = "MIME_NO_VERSION" // MIME parts without MIME-Version
	AnomalyEmptyBody       = "EMPTY_BODY"
)

// Field is one header field.
type Field struct {
	Name    string // as written
	Raw     string // value as written, unfolded (CRLF+WSP → WSP), without leading space
	Decoded string // RFC 2047 words decoded to UTF-8
}

// Header is the ordered list of header fields.
type Header []Field

// Get returns the decoded value of the first field named name ("" if absent).
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Decoded
		}
	}
	return ""
}

// Has reports whether a field named name exists.
func (h Header) Has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Values returns the decoded values of all fields named name.
func (h Header) Values(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Decoded)
		}
	}
	return out
}

// RawValues returns the raw values of all fields named name.
func (h Header) RawValues(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Raw)
		}
	}
	return out
}

// Part is one leaf of the MIME tree.
type Part struct {
	ContentType string // lower-case type/subtype ("text/plain" when absent)
	Charset     string // lower-case declared charset
	Encoding    string // lower-case Content-Transfer-Encoding
	Disposition string // lower-case, "" when absent
	Filename    string // decoded file name (Content-Disposition or Content-Type name)
	Size        int    // decoded size in bytes
	Text        string // visible text in UTF-8 for text parts (HTML converted)
	Source      string // text parts: decoded UTF-8 before HTML conversion
	HTML        bool   // text/html
	Header      Header
}

// IsAttachment reports whether the part is an attachment rather than body text.
func (p *Part) IsAttachment() bool {
	return p.Disposition == "attachment" || p.Filename != "" || !strings.HasPrefix(p.ContentType, "text/")
}

// URI is a link found in the text or HTML.
type URI struct {
	Raw   string // as written (HTML entities decoded)
	Host  string // lower-case host, "" when none
	Shown string // for HTML <a>: the visible link text
	HTML  bool   // found in an HTML attribute
}

// Message is a parsed message. Fields are read-only after parsing.
type Message struct {
	Header    Header
	RawHeader string // the header block as received (LF line ends)
	RawBody   string // the scanned body, undecoded (LF line ends)
	Parts     []*Part
	// Text is the visible text of the message: each text part once (for
	// multipart/alternative the plain and HTML versions both count), in order.
	Text string
	// HTMLTags counts HTML start tags by name (structure tokens for Bayes).
	HTMLTags map[string]int
	// HTMLAttrs counts "tag.attr" and "tag.attr=value" for presentational
	// attributes (at most ~500 distinct).
	HTMLAttrs map[string]int
	URIs      []URI
	// Anomalies maps anomaly names (the Anomaly… constants) to counts.
	Anomalies map[string]int

	Size      int64 // bytes received
	Truncated bool  // more than MaxSize bytes: the stored copy is cut
	Partial   bool  // more than ScanSize bytes: only the start was scanned

	mem    []byte
	file   *os.File
	stored int64
}

func (m *Message) addAnomaly(name string) {
	if m.Anomalies == nil {
		m.Anomalies = map[string]int{}
	}
	m.Anomalies[name]++
}

// Has reports whether the anomaly name was found.
func (m *Message) Has(anomaly string) bool { return m.Anomalies[anomaly] > 0 }

// Open returns the stored raw message (up to MaxSize bytes), e.g. for DKIM.
func (m *Message) Open() (io.ReadCloser, error) {
	if m.file != nil {
		return io.NopCloser(io.NewSectionReader(m.file, 0, m.stored)), nil
	}
	return io.NopCloser(bytes.NewReader(m.mem)), nil
}

// Close removes the spill file, if any. The Message must not be opened after.
func (m *Message) Close() error {
	if m.file == nil {
		return nil
	}
	err := m.file.Close() // unlinked when created (Builder.Write)
	m.file = nil
	return err
}

// Subject is the decoded Subject.
func (m *Message) Subject() string { return m.Header.Get("Subject") }

// Attachments returns the parts that are attachments.
func (m *Message) Attachments() []*Part {
	var out []*Part
	for _, p := range m.Parts {
		if p.IsAttachment() {
			out = append(out, p)
		}
	}
	return out
}
