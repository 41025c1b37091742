package ldap

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	goldap "github.com/go-ldap/ldap/v3"
)

// The subset of BER that LDAP uses (RFC 4511 §5.1): single-byte tags and
// definite lengths only. Requests are appended to reusable buffers; responses
// are read whole into a reusable buffer and walked in place, so an uncached
// login allocates little more than the strings it keeps.

const (
	tagBoolean     = 0x01
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagEnumerated  = 0x0a
	tagSequence    = 0x30
	tagSet         = 0x31
	tagContext0    = 0x80 // [0] primitive: simple bind password, extended requestName

	tagBindRequest           = 0x60 // [APPLICATION 0]
	tagBindResponse          = 0x61
	tagSearchRequest         = 0x63
	tagSearchResultEntry     = 0x64
	tagSearchResultDone      = 0x65
	tagSearchResultReference = 0x73
	tagExtendedRequest       = 0x77
	tagExtendedResponse      = 0x78
)

var errMalformed = errors.New("ldap: malformed response")

// headerLen is the size of a tag and a definite length for n content bytes.
func headerLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n <= 0xff:
		return 3
	case n <= 0xffff:
		return 4
	case n <= 0xffffff:
		return 5
	}
	return 6
}

func appendHeader(b []byte, tag byte, n int) []byte {
	b = append(b, tag)
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n <= 0xff:
		return append(b, 0x81, byte(n))
	case n <= 0xffff:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendString(b []byte, tag byte, s string) []byte {
	return append(appendHeader(b, tag, len(s)), s...)
}

// appendInt encodes v (0 ≤ v < 2^31, all LDAP needs) in the fewest
// two's-complement bytes.
func appendInt(b []byte, tag byte, v int64) []byte {
	n := 1
	for v >= 1<<(8*n-1) && n < 4 {
		n++
	}
	b = append(b, tag, byte(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// readMessage reads one LDAPMessage (a SEQUENCE) from r into buf, which it
// grows as needed; messages over maxResponse are refused.
func readMessage(r *bufio.Reader, buf []byte) ([]byte, error) {
	hdr, err := r.Peek(2)
	if err != nil {
		return buf, err
	}
	if hdr[0] != tagSequence {
		return buf, fmt.Errorf("ldap: response does not start with a SEQUENCE (%#x)", hdr[0])
	}
	hl, n := 2, int(hdr[1])
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 4 {
			return buf, errors.New("ldap: indefinite or oversized length in a response")
		}
		if hdr, err = r.Peek(2 + k); err != nil {
			return buf, err
		}
		n = 0
		for _, c := range hdr[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hl += k
	}
	if n > maxResponse {
		return buf, fmt.Errorf("ldap: response of %d bytes exceeds %d", n, maxResponse)
	}
	if _, err := r.Discard(hl); err != nil {
		return buf, err
	}
	if cap(buf) < n {
		buf = make([]byte, n, max(n, 2*cap(buf)))
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	return buf, nil
}

// tlv splits the next element off b: its tag, its contents and the rest.
func tlv(b []byte) (tag byte, val, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errMalformed
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, errMalformed // multi-byte tags do not occur in LDAP
	}
	n, i := int(b[1]), 2
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return 0, nil, nil, errMalformed
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		i += k
	}
	if n < 0 || n > len(b)-i {
		return 0, nil, nil, errMalformed
	}
	return tag, b[i : i+n], b[i+n:], nil
}

// parseInt decodes a two's-complement INTEGER/ENUMERATED of up to 8 bytes.
func parseInt(v []byte) (int64, error) {
	if len(v) == 0 || len(v) > 8 {
		return 0, errMalformed
	}
	x := int64(int8(v[0]))
	for _, c := range v[1:] {
		x = x<<8 | int64(c)
	}
	return x, nil
}

// parseMessage splits the contents of an LDAPMessage into its id and its
// protocol op (tag and contents); controls after the op are ignored.
func parseMessage(msg []byte) (id int64, opTag byte, op []byte, err error) {
	tag, v, rest, err := tlv(msg)
	if err != nil || tag != tagInteger {
		return 0, 0, nil, errMalformed
	}
	if id, err = parseInt(v); err != nil {
		return 0, 0, nil, err
	}
	opTag, op, _, err = tlv(rest)
	if err != nil {
		return 0, 0, nil, err
	}
	return id, opTag, op, nil
}

// parseResult reads resultCode and diagnosticMessage from an LDAPResult.
func parseResult(b []byte) (code int64, diag string, err error) {
	tag, v, rest, err := tlv(b)
	if err != nil || tag != tagEnumerated {
		return 0, "", errMalformed
	}
	if code, err = parseInt(v); err != nil {
		return 0, "", err
	}
	if tag, _, rest, err = tlv(rest); err != nil || tag != tagOctetString { // matchedDN
		return 0, "", errMalformed
	}
	if tag, v, _, err = tlv(rest); err != nil || tag != tagOctetString {
		return 0, "", errMalformed
	}
	return code, string(v), nil
}

// parseEntry decodes a SearchResultEntry: objectName and the attributes with
// their values (copied out of the read buffer).
func parseEntry(b []byte) (*goldap.Entry, error) {
	tag, dn, rest, err := tlv(b)
	if err != nil || tag != tagOctetString {
		return nil, errMalformed
	}
	tag, list, _, err := tlv(rest)
	if err != nil || tag != tagSequence {
		return nil, errMalformed
	}
	e := &goldap.Entry{DN: string(dn)}
	for len(list) > 0 {
		var attr []byte
		if tag, attr, list, err = tlv(list); err != nil || tag != tagSequence {
			return nil, errMalformed
		}
		tag, name, vals, err := tlv(attr)
		if err != nil || tag != tagOctetString {
			return nil, errMalformed
		}
		if tag, vals, _, err = tlv(vals); err != nil || tag != tagSet {
			return nil, errMalformed
		}
		ea := &goldap.EntryAttribute{Name: string(name)}
		for len(vals) > 0 {
			var v []byte
			if tag, v, vals, err = tlv(vals); err != nil || tag != tagOctetString {
				return nil, errMalformed
			}
			ea.Values = append(ea.Values, string(v))
		}
		e.Attributes = append(e.Attributes, ea)
	}
	return e, nil
}
