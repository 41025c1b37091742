// Package password verifies stored password entries in Dovecot's format,
// "{SCHEME[.ENCODING]}data" (doc: dovecot core/config/auth/schemes.md), so a
// userPassword attribute or a passwd-file line that Dovecot accepts is accepted
// here too.
//
// Supported schemes: PLAIN/CLEAR/CLEARTEXT, SHA/SHA1, SHA256, SHA512, SSHA,
// SSHA256, SSHA512, SMD5, PLAIN-MD5, LDAP-MD5, CRYPT ($1$ $5$ $6$ $2a/b/y$ $y$),
// MD5-CRYPT, MD5 (MD5-CRYPT or PLAIN-MD5, as in Dovecot), SHA256-CRYPT,
// SHA512-CRYPT, BLF-CRYPT, ARGON2I, ARGON2ID, PBKDF2 (Dovecot's own
// "$1$salt$rounds$hex" format), CRAM-MD5/HMAC-MD5 and SCRAM-SHA-1/SCRAM-SHA-256.
// Every comparison of secrets is constant-time. Stored entries are not trusted:
// one with a truncated hash or a cost above the caps in crypt.go is
// ErrMalformed rather than a weak match or a denial of service. Traditional DES
// crypt is not supported (no maintained Go implementation).
//
// The golden vectors in testdata/vectors.txt were produced by Dovecot's own
// `doveadm pw` and libxcrypt; see testdata/gen-vectors.sh.
package password

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Errors returned by Verify; callers classify them with errors.Is.
var (
	// ErrMismatch: the password does not match the stored entry.
	ErrMismatch = errors.New("password: mismatch")
	// ErrUnknownScheme: the {SCHEME} is not one this package can verify.
	ErrUnknownScheme = errors.New("password: unknown scheme")
	// ErrMalformed: the stored entry cannot be decoded for its scheme.
	ErrMalformed = errors.New("password: malformed stored password")
)

// maxPasswordLen bounds the work an attacker can make a hash do; Postfix caps a
// whole SASL response at 12 KiB and Dovecot's line limit is 16 KiB.
const maxPasswordLen = 4096

// Encoding is how a scheme's binary digest is written.
type Encoding int

// Encodings (Dovecot: PW_ENCODING_NONE/BASE64/HEX).
const (
	EncNone Encoding = iota
	EncBase64
	EncHex
)

// Entry is a parsed stored password.
type Entry struct {
	Scheme   string   // canonical upper-case scheme name, aliases resolved (e.g. CLEAR → PLAIN)
	Encoding Encoding // the explicit .B64/.HEX suffix, or the scheme's default
	explicit bool     // Encoding came from a suffix
	Data     string   // what follows the "}"
}

// aliases maps alternative scheme names to the canonical one.
var aliases = map[string]string{
	"CLEAR":        "PLAIN",
	"CLEARTEXT":    "PLAIN",
	"SHA1":         "SHA",
	"HMAC-MD5":     "CRAM-MD5",
	"BLF-CRYPT":    "CRYPT", // verification is the same: the crypt string carries the algorithm
	"MD5-CRYPT":    "CRYPT",
	"SHA256-CRYPT": "CRYPT",
	"SHA512-CRYPT": "CRYPT",
	"ARGON2I":      "ARGON2",
	"ARGON2ID":     "ARGON2",
	"LDAP-MD5":     "PLAIN-MD5",
}

// digestSchemes are schemes whose data is an encoded binary digest.
var digestSchemes = map[string]struct {
	newHash func() hash.Hash
	salted  bool
	defEnc  Encoding
}{
	"SHA":       {sha1.New, false, EncBase64},
	"SHA256":    {sha256.New, false, EncBase64},
	"SHA512":    {sha512.New, false, EncBase64},
	"SSHA":      {sha1.New, true, EncBase64},
	"SSHA256":   {sha256.New, true, EncBase64},
	"SSHA512":   {sha512.New, true, EncBase64},
	"SMD5":      {md5.New, true, EncBase64},
	"PLAIN-MD5": {md5.New, false, EncHex},
}

// Parse splits a stored entry. A value without "{SCHEME}" uses defaultScheme
// (Dovecot's default_pass_scheme); when that is empty and the value looks like a
// crypt(3) string ("$id$…") it is treated as CRYPT, as Dovecot does.
func Parse(stored, defaultScheme string) (Entry, error) {
	scheme, data := defaultScheme, stored
	if strings.HasPrefix(stored, "{") {
		end := strings.IndexByte(stored, '}')
		if end < 0 {
			return Entry{}, fmt.Errorf("%w: missing '}' after scheme", ErrMalformed)
		}
		scheme, data = stored[1:end], stored[end+1:]
	} else if scheme == "" {
		if strings.HasPrefix(stored, "$") {
			scheme = "CRYPT"
		} else {
			return Entry{}, fmt.Errorf("%w: no {SCHEME} prefix and no default scheme", ErrUnknownScheme)
		}
	}
	e := Entry{Data: data}
	name := strings.ToUpper(scheme)
	if base, suffix, ok := strings.Cut(name, "."); ok {
		switch suffix {
		case "B64", "BASE64":
			e.Encoding, e.explicit = EncBase64, true
		case "HEX":
			e.Encoding, e.explicit = EncHex, true
		default:
			return Entry{}, fmt.Errorf("%w: encoding %q in {%s}", ErrUnknownScheme, suffix, scheme)
		}
		name = base
	}
	e.Scheme = canonical(name)
	if !known(e.Scheme) {
		return Entry{}, fmt.Errorf("%w: {%s}", ErrUnknownScheme, scheme)
	}
	if !e.explicit {
		if d, ok := digestSchemes[e.Scheme]; ok {
			e.Encoding = d.defEnc
		} else if e.Scheme == "CRAM-MD5" {
			e.Encoding = EncHex
		}
	}
	return e, nil
}

func canonical(name string) string {
	if c, ok := aliases[name]; ok {
		if c2, ok := aliases[c]; ok {
			return c2
		}
		return c
	}
	return name
}

func known(s string) bool {
	if _, ok := digestSchemes[s]; ok {
		return true
	}
	switch s {
	case "PLAIN", "MD5", "CRYPT", "ARGON2", "PBKDF2", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256":
		return true
	}
	return false
}

// Verify checks password against a stored entry. It returns nil on a match,
// ErrMismatch, or an error wrapping ErrUnknownScheme / ErrMalformed.
func Verify(stored, password, defaultScheme string) error {
	return VerifyContext(context.Background(), stored, password, defaultScheme)
}

// VerifyContext is Verify for a caller with a deadline: when ctx ends while
// the verification waits for its turn (see hashSlots), it returns an error
// wrapping ctx.Err() — the server is busy, which says nothing of the password.
func VerifyContext(ctx context.Context, stored, password, defaultScheme string) error {
	e, err := Parse(stored, defaultScheme)
	if err != nil {
		return err
	}
	return e.VerifyContext(ctx, password)
}

// Verify checks password against the entry.
func (e Entry) Verify(password string) error { return e.VerifyContext(context.Background(), password) }

// NotChecked reports an error of VerifyContext that says nothing of the
// password: ctx ended before it was checked. A mismatch found after ctx
// ended is still a mismatch.
func NotChecked(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// VerifyContext checks password against the entry; see VerifyContext.
func (e Entry) VerifyContext(ctx context.Context, password string) error {
	if len(password) > maxPasswordLen {
		return ErrMismatch
	}
	switch e.Scheme {
	case "PLAIN":
		plain, err := e.Plaintext()
		if err != nil {
			return err
		}
		return equal([]byte(plain), []byte(password))
	case "CRYPT", "ARGON2":
		return verifyCrypt(ctx, e.Data, password)
	case "MD5":
		// Dovecot's md5_verify: MD5-CRYPT when the value says so, else the value
		// is a PLAIN-MD5 digest in hex or base64.
		if strings.HasPrefix(e.Data, "$1$") {
			return verifyCrypt(ctx, e.Data, password)
		}
		e.Scheme = "PLAIN-MD5"
		if !e.explicit {
			e.Encoding = EncHex
		}
		return e.VerifyContext(ctx, password)
	case "PBKDF2":
		return verifyPBKDF2(e.Data, password)
	case "CRAM-MD5":
		ctx, err := e.CRAMMD5Secret()
		if err != nil {
			return err
		}
		want := CRAMMD5Context(password)
		return equal(ctx[:], want[:])
	case "SCRAM-SHA-1", "SCRAM-SHA-256":
		return verifySCRAMEntry(e, password)
	}
	d, ok := digestSchemes[e.Scheme]
	if !ok {
		return fmt.Errorf("%w: {%s}", ErrUnknownScheme, e.Scheme)
	}
	size := d.newHash().Size()
	rawSize := size
	if d.salted {
		rawSize = 0 // Dovecot guesses the encoding only for fixed-size digests
	}
	raw, err := e.decode(rawSize)
	if err != nil {
		return err
	}
	if d.salted {
		if len(raw) <= size {
			return fmt.Errorf("%w: {%s} has no salt", ErrMalformed, e.Scheme)
		}
	} else if len(raw) != size {
		return fmt.Errorf("%w: {%s} digest is %d bytes, want %d", ErrMalformed, e.Scheme, len(raw), size)
	}
	h := d.newHash()
	h.Write([]byte(password))
	h.Write(raw[size:]) // the salt (empty when unsalted)
	return equal(h.Sum(nil), raw[:size])
}

// Plaintext returns the clear password of a PLAIN entry (for CRAM-MD5 and SCRAM
// from stored plaintext).
func (e Entry) Plaintext() (string, error) {
	if e.Scheme != "PLAIN" {
		return "", fmt.Errorf("%w: {%s} is not plaintext", ErrUnknownScheme, e.Scheme)
	}
	if !e.explicit {
		return e.Data, nil
	}
	raw, err := e.decode(0)
	return string(raw), err
}

// decode turns the data into bytes according to the encoding. rawSize is the
// fixed size of the scheme's raw value, 0 if it has none. Without an explicit
// .HEX/.B64 suffix Dovecot (password_decode) ignores a fixed-size scheme's
// default encoding and guesses from the length — hex when it is exactly twice
// rawSize and decodes, base64 otherwise — so doveadm's base64 {LDAP-MD5} and a
// base64 {PLAIN-MD5} or {CRAM-MD5} verify as they do there.
func (e Entry) decode(rawSize int) ([]byte, error) {
	data := strings.TrimSpace(e.Data)
	enc := e.Encoding
	if !e.explicit && enc != EncNone && rawSize > 0 {
		if len(data) == 2*rawSize {
			if b, err := hex.DecodeString(data); err == nil {
				return b, nil
			}
		}
		enc = EncBase64
	}
	switch enc {
	case EncHex:
		b, err := hex.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("%w: {%s} is not valid hex", ErrMalformed, e.Scheme)
		}
		return b, nil
	case EncBase64:
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("%w: {%s} is not valid base64", ErrMalformed, e.Scheme)
		}
		return b, nil
	}
	return []byte(data), nil
}

// equal compares in constant time (length differences still leak, which is
// inherent and harmless for fixed-size digests).
func equal(a, b []byte) error {
	if subtle.ConstantTimeCompare(a, b) == 1 {
		return nil
	}
	return ErrMismatch
}

// PlaintextEquivalent reports whether an entry lets the server run a
// challenge-response mechanism: mech is "CRAM-MD5", "SCRAM-SHA-1" or "SCRAM-SHA-256".
// PLAIN serves all of them; {CRAM-MD5} only CRAM-MD5; {SCRAM-SHA-x} only its own SCRAM.
func (e Entry) PlaintextEquivalent(mech string) bool {
	switch e.Scheme {
	case "PLAIN":
		return true
	case "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256":
		return e.Scheme == mech
	}
	return false
}
