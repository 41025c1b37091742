package authd

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"

	"github.com/dovetail-mail/dovetail/directory/password"
)

// SCRAM-SHA-1 / SCRAM-SHA-256 server (RFC 5802, RFC 7677), without channel
// binding (the -PLUS variants are not offered, so a client asking for binding
// with "p=" is refused). Like Dovecot, the server-final message is sent as a
// challenge and the exchange ends with OK after the client's empty reply.
type scramMech struct {
	s     *Server
	name  string
	state int

	login       string
	grant       grant // what the OK will carry
	gs2Header   string
	clientBare  string
	serverFirst string
	nonce       string
	creds       password.SCRAMCredentials
}

func (m *scramMech) step(ctx context.Context, in []byte, has bool) outcome {
	switch m.state {
	case 0:
		if !has || len(in) == 0 {
			m.state = 1
			return cont(nil) // client-first comes in the next CONT
		}
		return m.clientFirst(ctx, string(in))
	case 1:
		return m.clientFirst(ctx, string(in))
	case 2:
		return m.clientFinal(string(in))
	case 3:
		if len(in) != 0 {
			return fail(m.login, "SCRAM: unexpected data after server-final")
		}
		return m.s.accepted(m.login, m.grant)
	}
	return fail(m.login, "SCRAM: unexpected step")
}

func (m *scramMech) clientFirst(ctx context.Context, msg string) outcome {
	// gs2-header: cbind-flag "," [authzid] ","
	parts := strings.SplitN(msg, ",", 3)
	if len(parts) != 3 {
		return fail("", "SCRAM: malformed client-first message")
	}
	switch {
	case parts[0] == "n" || parts[0] == "y":
	case strings.HasPrefix(parts[0], "p="):
		return fail("", "SCRAM: channel binding is not supported")
	default:
		return fail("", "SCRAM: bad gs2 flag")
	}
	authz := ""
	if parts[1] != "" {
		if !strings.HasPrefix(parts[1], "a=") {
			return fail("", "SCRAM: bad authzid")
		}
		var ok bool
		if authz, ok = saslName(parts[1][2:]); !ok {
			return fail("", "SCRAM: invalid authzid escaping")
		}
	}
	m.gs2Header = parts[0] + "," + parts[1] + ","
	m.clientBare = parts[2]
	var cnonce string
	for i, attr := range strings.Split(m.clientBare, ",") {
		switch {
		case i == 0 && strings.HasPrefix(attr, "m="):
			return fail("", "SCRAM: mandatory extension not supported")
		case i == 0 && strings.HasPrefix(attr, "n="):
			var ok bool
			if m.login, ok = saslName(attr[2:]); !ok {
				return fail("", "SCRAM: invalid user name escaping")
			}
		case i == 1 && strings.HasPrefix(attr, "r="):
			cnonce = attr[2:]
		case i < 2:
			return fail("", "SCRAM: malformed client-first message")
		}
	}
	if m.login == "" || cnonce == "" || strings.ContainsAny(cnonce, ",") {
		return fail(m.login, "SCRAM: missing user name or nonce")
	}
	if authz != "" && authz != m.login {
		o := fail(m.login, "SCRAM: authorization identity differs")
		o.code = "authz_fail"
		return o
	}
	entry, o := m.s.secret(ctx, m.login, m.name)
	if o.kind != kindOK {
		return o
	}
	m.grant = o.grant
	creds, err := entry.SCRAMSecret(m.name)
	if err != nil {
		return fail(m.login, "stored password cannot serve "+m.name)
	}
	m.creds = creds
	var r [18]byte
	rand.Read(r[:])
	m.nonce = cnonce + base64.RawStdEncoding.EncodeToString(r[:])
	m.serverFirst = "r=" + m.nonce + ",s=" + base64.StdEncoding.EncodeToString(creds.Salt) + ",i=" + strconv.Itoa(creds.Iterations)
	m.state = 2
	return cont([]byte(m.serverFirst))
}

func (m *scramMech) clientFinal(msg string) outcome {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return fail(m.login, "SCRAM: client-final without proof")
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || attrs[0] != "c="+base64.StdEncoding.EncodeToString([]byte(m.gs2Header)) {
		return fail(m.login, "SCRAM: channel binding data mismatch")
	}
	if attrs[1] != "r="+m.nonce {
		return fail(m.login, "SCRAM: nonce mismatch")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	h := password.SCRAMHash(m.name)
	if err != nil || len(proof) != h().Size() {
		return fail(m.login, "SCRAM: malformed proof")
	}
	authMsg := m.clientBare + "," + m.serverFirst + "," + withoutProof
	sig := mac(h, m.creds.StoredKey, authMsg)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ sig[i]
	}
	sum := h()
	sum.Write(clientKey)
	if !hmacEqual(sum.Sum(nil), m.creds.StoredKey) {
		return fail(m.login, "SCRAM: proof mismatch")
	}
	m.state = 3
	return cont([]byte("v=" + base64.StdEncoding.EncodeToString(mac(h, m.creds.ServerKey, authMsg))))
}

func mac(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// saslName decodes "=2C" and "=3D" (RFC 5802 §5.1). Any other "=" is
// invalid and the server MUST fail the exchange (as Dovecot does): ok=false.
func saslName(s string) (name string, ok bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}
