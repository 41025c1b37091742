package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Default protocol limits. Postfix 3.12 sends 31 attributes whose values are
// bounded by smtpd's own line_length_limit (2048) except the xtext-encoded client
// certificate subject/issuer, which can reach a few KiB; 64 KiB per line and 100
// attributes leave ample headroom while bounding one request to ~6.4 MB worst
// case (and ~3 KB in practice).
const (
	DefaultMaxLineLength = 64 << 10
	DefaultMaxAttributes = 100
)

// ProtocolError is a malformed request. Fatal errors (a line or request over the
// limits, a connection that ends mid-request) leave the stream unsynchronised:
// the server logs and closes, and Postfix retries on a new connection. Non-fatal
// ones are found in a request that was read up to its blank line: the server
// answers a temporary action and keeps the connection.
type ProtocolError struct {
	Line   int // 1-based line within the request; 0 when not line-specific
	Reason string
	Fatal  bool
}

func (e *ProtocolError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("policy request line %d: %s", e.Line, e.Reason)
	}
	return "policy request: " + e.Reason
}

// errUnexpectedEOF is returned when the peer closes in the middle of a request.
var errUnexpectedEOF = &ProtocolError{Reason: "connection closed in the middle of a request", Fatal: true}

// Reader reads policy requests from a stream, enforcing the limits.
type Reader struct {
	br            *bufio.Reader
	maxLine       int
	maxAttributes int
	long          []byte // assembles lines longer than the bufio buffer
	// raw collects the request's attribute lines and attrs their offsets, so
	// that one string conversion per request backs every name and value
	// (instead of one allocation per attribute).
	raw   []byte
	attrs []attrSpan
}

// attrSpan locates one "name=value" line in Reader.raw.
type attrSpan struct {
	start, eq, end int
	line           int
}

// NewReader returns a Reader; limits <= 0 take the defaults.
func NewReader(r io.Reader, maxLine, maxAttributes int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineLength
	}
	if maxAttributes <= 0 {
		maxAttributes = DefaultMaxAttributes
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	return &Reader{br: br, maxLine: maxLine, maxAttributes: maxAttributes}
}

// Read reads one request into req (which it resets first). It returns io.EOF
// when the stream ends cleanly between requests, a *ProtocolError for a malformed
// request, or the underlying read error (timeouts included).
func (rd *Reader) Read(req *Request) error {
	req.reset()
	var first *ProtocolError // first non-fatal problem; the rest of the request is still consumed
	attrs := 0
	if cap(rd.raw) > 64<<10 {
		rd.raw = nil // do not keep a rare huge request's buffer for the connection's life
	}
	rd.raw, rd.attrs = rd.raw[:0], rd.attrs[:0]
	for lineNo := 1; ; lineNo++ {
		line, err := rd.readLine()
		if err != nil {
			var pe *ProtocolError
			switch {
			case errors.As(err, &pe):
				pe.Line = lineNo
				return pe
			case errors.Is(err, io.EOF) && lineNo == 1 && len(line) == 0:
				return io.EOF
			case errors.Is(err, io.EOF):
				return errUnexpectedEOF
			}
			return err
		}
		if len(line) == 0 {
			if first != nil {
				return first
			}
			if lineNo == 1 {
				// A stray empty line between requests: Postfix never sends one. Neither
				// answering (the client expects no reply) nor skipping (an endless
				// stream of them) is right, so the connection is closed.
				return &ProtocolError{Line: 1, Reason: "empty line where a request should start", Fatal: true}
			}
			raw := string(rd.raw)
			for _, a := range rd.attrs {
				if err := req.set(raw[a.start:a.eq], raw[a.eq+1:a.end]); err != nil {
					return &ProtocolError{Line: a.line, Reason: err.Error()}
				}
			}
			if err := req.check(); err != nil {
				return &ProtocolError{Reason: err.Error()}
			}
			return nil
		}
		attrs++
		if attrs > rd.maxAttributes {
			return &ProtocolError{Line: lineNo, Reason: fmt.Sprintf("more than %d attributes", rd.maxAttributes), Fatal: true}
		}
		if first != nil {
			continue
		}
		if bytes.IndexByte(line, 0) >= 0 {
			first = &ProtocolError{Line: lineNo, Reason: "NUL byte in attribute"}
			continue
		}
		eq := bytes.IndexByte(line, '=')
		switch {
		case eq < 0:
			first = &ProtocolError{Line: lineNo, Reason: fmt.Sprintf("no '=' in %q", truncate(string(line), 64))}
			continue
		case eq == 0:
			first = &ProtocolError{Line: lineNo, Reason: "empty attribute name"}
			continue
		}
		start := len(rd.raw)
		rd.raw = append(rd.raw, line...)
		rd.attrs = append(rd.attrs, attrSpan{start: start, eq: start + eq, end: len(rd.raw), line: lineNo})
	}
}

// readLine returns the next line without its "\n" (and a "\r" before it, which
// Postfix never sends but a human testing with telnet or nc does). The slice is
// valid until the next call.
func (rd *Reader) readLine() ([]byte, error) {
	line, err := rd.br.ReadSlice('\n')
	if err == nil {
		if len(line)-1 > rd.maxLine {
			return nil, rd.tooLong()
		}
		return trimEOL(line), nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if len(line) > 0 && errors.Is(err, io.EOF) {
			return line, io.EOF
		}
		return line, err
	}
	rd.long = append(rd.long[:0], line...)
	for {
		if len(rd.long) > rd.maxLine {
			return nil, rd.tooLong()
		}
		line, err = rd.br.ReadSlice('\n')
		rd.long = append(rd.long, line...)
		switch {
		case err == nil:
			if len(rd.long)-1 > rd.maxLine {
				return nil, rd.tooLong()
			}
			return trimEOL(rd.long), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return rd.long, io.EOF
		default:
			return nil, err
		}
	}
}

func (rd *Reader) tooLong() error {
	return &ProtocolError{Reason: fmt.Sprintf("line longer than %d bytes", rd.maxLine), Fatal: true}
}

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// requestBuffered reports whether a whole request, up to its blank line, is
// already buffered: reading it then cannot wait on the connection. (Read stops
// at the first empty line, so the first "\n\n" bounds what it consumes; a
// request with "\r\n" line ends simply reports false.)
func (rd *Reader) requestBuffered() bool {
	b, _ := rd.br.Peek(rd.br.Buffered())
	return bytes.Contains(b, []byte("\n\n"))
}

// Buffered reports whether request bytes are already waiting (pipelining).
func (rd *Reader) Buffered() int { return rd.br.Buffered() }
