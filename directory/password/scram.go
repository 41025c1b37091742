package password

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SCRAM (RFC 5802, RFC 7677). Dovecot stores {SCRAM-SHA-1} / {SCRAM-SHA-256} as
// "iterations,b64(salt),b64(StoredKey),b64(ServerKey)"
// (src/auth/password-scheme-scram.c).

// SCRAMCredentials is what a SCRAM server needs for one user.
type SCRAMCredentials struct {
	Mech       string // "SCRAM-SHA-1" or "SCRAM-SHA-256"
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// SCRAMHash returns the hash of a SCRAM mechanism, or nil if unknown.
func SCRAMHash(mech string) func() hash.Hash {
	switch mech {
	case "SCRAM-SHA-1":
		return sha1.New
	case "SCRAM-SHA-256":
		return sha256.New
	}
	return nil
}

// SCRAMFromPassword derives credentials from a plaintext password.
func SCRAMFromPassword(mech, password string, salt []byte, iterations int) (SCRAMCredentials, error) {
	h := SCRAMHash(mech)
	if h == nil {
		return SCRAMCredentials{}, fmt.Errorf("%w: %s", ErrUnknownScheme, mech)
	}
	salted, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return SCRAMCredentials{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	clientKey := hmacSum(h, salted, "Client Key")
	stored := h()
	stored.Write(clientKey)
	return SCRAMCredentials{
		Mech: mech, Iterations: iterations, Salt: salt,
		StoredKey: stored.Sum(nil), ServerKey: hmacSum(h, salted, "Server Key"),
	}, nil
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// DefaultSCRAMIterations is used when SCRAM credentials are derived from a stored
// plaintext password (RFC 7677 recommends at least 4096; Dovecot's default).
const DefaultSCRAMIterations = 4096

// SCRAMSecret returns credentials for mech from an entry that can serve it:
// {PLAIN} (derived with a fresh random salt) or the matching {SCRAM-*} entry.
func (e Entry) SCRAMSecret(mech string) (SCRAMCredentials, error) {
	switch {
	case e.Scheme == "PLAIN":
		p, err := e.Plaintext()
		if err != nil {
			return SCRAMCredentials{}, err
		}
		salt := make([]byte, 16)
		rand.Read(salt)
		return SCRAMFromPassword(mech, p, salt, DefaultSCRAMIterations)
	case e.Scheme == mech:
		return parseSCRAM(e)
	}
	return SCRAMCredentials{}, fmt.Errorf("%w: {%s} cannot serve %s", ErrUnknownScheme, e.Scheme, mech)
}

func parseSCRAM(e Entry) (SCRAMCredentials, error) {
	h := SCRAMHash(e.Scheme)
	f := strings.Split(strings.TrimSpace(e.Data), ",")
	if h == nil || len(f) != 4 {
		return SCRAMCredentials{}, fmt.Errorf("%w: {%s} wants iter,salt,storedkey,serverkey", ErrMalformed, e.Scheme)
	}
	iter, err := strconv.Atoi(f[0])
	if err != nil || iter < 1 || iter > limits.scramIterations {
		return SCRAMCredentials{}, fmt.Errorf("%w: {%s} iterations %q", ErrMalformed, e.Scheme, f[0])
	}
	c := SCRAMCredentials{Mech: e.Scheme, Iterations: iter}
	for i, dst := range []*[]byte{&c.Salt, &c.StoredKey, &c.ServerKey} {
		b, err := base64.StdEncoding.DecodeString(f[i+1])
		if err != nil {
			return SCRAMCredentials{}, fmt.Errorf("%w: {%s} field %d is not base64", ErrMalformed, e.Scheme, i+2)
		}
		*dst = b
	}
	if len(c.StoredKey) != h().Size() || len(c.ServerKey) != h().Size() {
		return SCRAMCredentials{}, fmt.Errorf("%w: {%s} key sizes", ErrMalformed, e.Scheme)
	}
	return c, nil
}

// verifySCRAMEntry checks a plaintext password against a {SCRAM-*} entry.
func verifySCRAMEntry(e Entry, password string) error {
	c, err := parseSCRAM(e)
	if err != nil {
		return err
	}
	got, err := SCRAMFromPassword(e.Scheme, password, c.Salt, c.Iterations)
	if err != nil {
		return err
	}
	return equal(append(got.StoredKey, got.ServerKey...), append(c.StoredKey, c.ServerKey...))
}
