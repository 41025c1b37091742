package message

import (
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-message/charset"
)

// Errors of ParseMailbox.
var (
	ErrNoMailbox        = errors.New("no mailbox")
	ErrSeveralMailboxes = errors.New("several mailboxes")
	ErrBadMailbox       = errors.New("unparsable mailbox")
)

// addressParser decodes display names in any charset, passing unknown ones
// through: an exotic charset in the name must not make the address unreadable.
var addressParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
		if cr, err := charset.Reader(cs, r); err == nil {
			return cr, nil
		}
		return r, nil
	},
}}

// ParseMailbox returns the address (local@domain) of a header value that must
// name exactly one mailbox, such as From.
//
// The address decides DMARC alignment and allow lists, so it is never guessed:
// a value net/mail rejects is accepted only when, outside quoted strings and
// comments, it has exactly one <angle-addr> and no other '@', '<' or '>'.
// That admits the common display-name sloppiness ("Shop [News] <a@b>",
// "Doe, John <a@b>") and refuses what mail clients may show differently
// (unterminated comments or quotes, a second address).
func ParseMailbox(v string) (string, error) {
	list, err := addressParser.ParseList(v)
	if err == nil {
		switch len(list) {
		case 0:
			return "", ErrNoMailbox
		case 1:
			if list[0].Address == "" {
				return "", ErrNoMailbox
			}
			return list[0].Address, nil
		}
		return "", ErrSeveralMailboxes
	}
	return lenientMailbox(v)
}

func lenientMailbox(v string) (string, error) {
	var addr string
	found := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"':
			end, ok := skipQuoted(v, i)
			if !ok {
				return "", ErrBadMailbox
			}
			i = end
		case '(':
			end, ok := skipComment(v, i)
			if !ok {
				return "", ErrBadMailbox
			}
			i = end
		case '<':
			if found {
				return "", ErrSeveralMailboxes
			}
			end, a, ok := angleAddr(v, i)
			if !ok {
				return "", ErrBadMailbox
			}
			addr, found, i = a, true, end
		case '>', '@', '\\', ')':
			// An address or stray bracket outside the angle-addr: clients
			// disagree about what to show.
			return "", ErrBadMailbox
		}
	}
	if !found {
		return "", ErrBadMailbox
	}
	return addr, nil
}

// AuthservID returns the authserv-id of an Authentication-Results value: its
// first token after any CFWS (RFC 8601 §2.2), unquoted. A version or a
// comment may follow it ("mx 1; …", "mx (c); …"), so the text before ';'
// cannot be compared as a whole. After an unterminated comment it is "".
func AuthservID(v string) string {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case ' ', '\t', '\r', '\n':
		case '(':
			end, ok := skipComment(v, i)
			if !ok {
				return ""
			}
			i = end
		case '"':
			var b strings.Builder
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				b.WriteByte(v[i])
			}
			return b.String()
		default:
			if n := strings.IndexAny(v[i:], " \t\r\n();\""); n >= 0 {
				return v[i : i+n]
			}
			return v[i:]
		}
	}
	return ""
}

// skipQuoted returns the index of the closing quote of the quoted string
// starting at v[i].
func skipQuoted(v string, i int) (int, bool) {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j, true
		}
	}
	return 0, false
}

// skipComment returns the index of the parenthesis closing the (nested)
// comment starting at v[i].
func skipComment(v string, i int) (int, bool) {
	depth := 0
	for j := i; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return j, true
			}
		}
	}
	return 0, false
}

// angleAddr reads the addr-spec of the angle-addr starting at v[i]: one '@'
// outside a quoted local part, something on both sides, no source route.
func angleAddr(v string, i int) (end int, addr string, ok bool) {
	at := -1
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '"':
			e, ok := skipQuoted(v, j)
			if !ok {
				return 0, "", false
			}
			j = e
		case '@':
			if at >= 0 {
				return 0, "", false
			}
			at = j
		case '<', '(', ')', ',', ';', ':', '\\', ' ', '\t', '\r', '\n':
			return 0, "", false
		case '>':
			if at <= i+1 || at >= j-1 {
				return 0, "", false
			}
			return j, v[i+1 : j], true
		}
	}
	return 0, "", false
}
