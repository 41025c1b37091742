package authd

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/directory/password"
)

// Mechanism names and the MECH flags Dovecot announces for them.
const (
	mechPlain       = "PLAIN"
	mechLogin       = "LOGIN"
	mechCRAMMD5     = "CRAM-MD5"
	mechSCRAMSHA1   = "SCRAM-SHA-1"
	mechSCRAMSHA256 = "SCRAM-SHA-256"
)

var mechFlags = map[string]string{
	mechPlain:       "plaintext",
	mechLogin:       "plaintext",
	mechCRAMMD5:     "dictionary\tactive",
	mechSCRAMSHA1:   "mutual-auth",
	mechSCRAMSHA256: "mutual-auth",
}

// needsSecret lists mechanisms that need the stored secret (directory.SecretReader).
var needsSecret = map[string]bool{mechCRAMMD5: true, mechSCRAMSHA1: true, mechSCRAMSHA256: true}

type kind int

const (
	kindCont kind = iota // send a challenge, wait for CONT
	kindOK
	kindFail
	kindTemp // the directory cannot answer now
)

// outcome is the result of one mechanism step.
type outcome struct {
	kind      kind
	challenge []byte
	login     string // what the client asked to log in as
	code      string // FAIL code= (optional)
	reason    string // FAIL reason= (optional; must not reveal unknown user vs bad password)
	cached    bool
	grant     grant // OK: the canonical user and where it may log in from
	err       error // why, for the log (never contains the password)
}

func cont(ch []byte) outcome { return outcome{kind: kindCont, challenge: ch} }

func fail(login, why string) outcome {
	return outcome{kind: kindFail, login: login, err: fmt.Errorf("%s", why)}
}

// mechanism is one SASL exchange; step gets the client's data (has=false: the
// AUTH had no initial response).
type mechanism interface {
	step(ctx context.Context, in []byte, has bool) outcome
}

func (s *Server) newMech(name string) mechanism {
	switch name {
	case mechPlain:
		return &plainMech{s: s}
	case mechLogin:
		return &loginMech{s: s}
	case mechCRAMMD5:
		return &cramMech{s: s}
	case mechSCRAMSHA1, mechSCRAMSHA256:
		return &scramMech{s: s, name: name}
	}
	return nil
}

// PLAIN (RFC 4616): authzid NUL authcid NUL passwd.
type plainMech struct {
	s       *Server
	started bool
}

func (m *plainMech) step(ctx context.Context, in []byte, has bool) outcome {
	if !has && !m.started {
		m.started = true
		return cont(nil) // empty challenge: "send your credentials"
	}
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 {
		return fail("", "malformed PLAIN response")
	}
	authz, authc, pw := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != authc {
		o := fail(authc, "authorization identity differs (master users are not supported)")
		o.code = "authz_fail"
		return o
	}
	return m.s.checkPlain(ctx, authc, pw)
}

// LOGIN (draft-murchison-sasl-login): "Username:" then "Password:".
type loginMech struct {
	s     *Server
	state int
	user  string
}

func (m *loginMech) step(ctx context.Context, in []byte, has bool) outcome {
	switch m.state {
	case 0:
		if has && len(in) > 0 { // an initial response is the user name
			m.user, m.state = string(in), 2
			return cont([]byte("Password:"))
		}
		m.state = 1
		return cont([]byte("Username:"))
	case 1:
		m.user, m.state = string(in), 2
		return cont([]byte("Password:"))
	}
	return m.s.checkPlain(ctx, m.user, string(in))
}

// CRAM-MD5 (RFC 2195).
type cramMech struct {
	s         *Server
	challenge []byte
}

func (m *cramMech) step(ctx context.Context, in []byte, has bool) outcome {
	if m.challenge == nil {
		if has && len(in) > 0 {
			return fail("", "CRAM-MD5 has no initial response")
		}
		var r [8]byte
		rand.Read(r[:])
		m.challenge = fmt.Appendf(nil, "<%d.%d@%s>", binary.BigEndian.Uint64(r[:])>>1, time.Now().Unix(), m.s.hostname)
		return cont(m.challenge)
	}
	sp := bytes.LastIndexByte(in, ' ')
	if sp <= 0 {
		return fail("", "malformed CRAM-MD5 response")
	}
	login, digest := string(in[:sp]), string(in[sp+1:])
	entry, o := m.s.secret(ctx, login, mechCRAMMD5)
	if o.kind != kindOK {
		return o
	}
	ctxMD5, err := entry.CRAMMD5Secret()
	if err != nil {
		return fail(login, "stored password cannot serve CRAM-MD5")
	}
	if password.VerifyCRAMMD5(ctxMD5, m.challenge, strings.ToLower(digest)) != nil {
		return fail(login, "CRAM-MD5 digest mismatch")
	}
	return m.s.accepted(login, o.grant)
}

// hmacEqual compares MACs in constant time.
func hmacEqual(a, b []byte) bool { return hmac.Equal(a, b) }
