package authd

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Wire format of the Dovecot auth-client protocol (Dovecot doc
// developers/design/auth_protocol.md; server src/auth/auth-client-connection.c,
// auth-request-handler.c). Lines end in LF, fields are TAB-separated, values are
// tab-escaped with \001 (src/lib/strescape.c).

const (
	// maxLine is AUTH_CLIENT_MAX_LINE_LENGTH: longer lines are a client bug.
	maxLine = 16384
	// protoMajor/protoMinor is what we announce: 1.2 like Dovecot 2.3, which is
	// what Postfix's xsasl_dovecot client was verified against.
	protoMajor = 1
	protoMinor = 2
)

// errProtocol marks a client bug after which Dovecot disconnects.
var errProtocol = errors.New("protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// splitLine splits a line (without its LF) into the command and its arguments.
func splitLine(line string) (cmd string, args []string) {
	f := strings.Split(line, "\t")
	return f[0], f[1:]
}

// parseID parses a request id: a non-zero unsigned 32-bit decimal.
func parseID(s string) (uint32, error) {
	if s == "" || len(s) > 10 || s[0] == '+' || s[0] == '-' {
		return 0, protoErr("invalid request id %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, protoErr("invalid request id %q", s)
	}
	return uint32(n), nil
}

// authLine is a parsed AUTH command.
type authLine struct {
	id        uint32
	mech      string
	service   string
	lip, rip  string
	secured   bool
	noPenalty bool
	hasResp   bool   // an initial response was given
	resp      string // base64, not yet decoded
}

// parseAuth parses the arguments of "AUTH\t<id>\t<mech>\tservice=…[\t…][\tresp=…]".
// Unknown parameters are ignored, as the protocol requires.
func parseAuth(args []string, clientMinor int) (authLine, error) {
	var a authLine
	if len(args) < 2 {
		return a, protoErr("AUTH needs an id and a mechanism")
	}
	id, err := parseID(args[0])
	if err != nil {
		return a, err
	}
	a.id, a.mech = id, strings.ToUpper(args[1])
	if a.mech == "" {
		return a, protoErr("AUTH %d: empty mechanism", id)
	}
	for i, p := range args[2:] {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "service", "protocol":
			a.service = unescape(v)
		case "lip":
			a.lip = unescape(v)
		case "rip":
			a.rip = unescape(v)
		case "secured":
			a.secured = true
		case "no-penalty":
			a.noPenalty = true
		case "resp":
			if i != len(args[2:])-1 {
				// Dovecot: resp must be the last parameter (it may be huge).
				return a, protoErr("AUTH %d: resp= is not the last parameter", id)
			}
			// Clients before 1.2 send "resp=" for "no initial response"; "resp=="
			// is an empty one (Dovecot's rule).
			if v != "" || clientMinor >= 2 {
				a.hasResp, a.resp = true, v
			}
		}
	}
	if a.service == "" {
		return a, protoErr("AUTH %d: service= is missing", id)
	}
	return a, nil
}

// decodeB64 decodes client data; "=" alone is an empty response.
func decodeB64(s string) ([]byte, error) {
	if s == "" || s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

// escape tab-escapes a value for a reply field.
func escape(s string) string {
	if !strings.ContainsAny(s, "\x00\x01\t\r\n") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString("\x010")
		case 1:
			b.WriteString("\x011")
		case '\t':
			b.WriteString("\x01t")
		case '\r':
			b.WriteString("\x01r")
		case '\n':
			b.WriteString("\x01n")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescape reverses escape; an unknown escape keeps the following byte.
func unescape(s string) string {
	if !strings.Contains(s, "\x01") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 1 || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case '0':
			b.WriteByte(0)
		case '1':
			b.WriteByte(1)
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
