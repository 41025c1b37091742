package password

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/go-crypt/crypt"
	"github.com/go-crypt/crypt/algorithm/argon2"
	"github.com/go-crypt/crypt/algorithm/bcrypt"
	"github.com/go-crypt/crypt/algorithm/md5crypt"
	"github.com/go-crypt/crypt/algorithm/scrypt"
	"github.com/go-crypt/crypt/algorithm/shacrypt"
)

// The decoder registers exactly the crypt(3)/PHC families Dovecot's {CRYPT},
// *-CRYPT and ARGON2* schemes produce — not go-crypt's "all" set, which also
// accepts plaintext and passlib formats we do not want a userPassword to mean.
var decoder = sync.OnceValues(func() (*crypt.Decoder, error) {
	d := crypt.NewDecoder()
	for _, reg := range []func(*crypt.Decoder) error{
		func(d *crypt.Decoder) error { return md5crypt.RegisterDecoderCommon(d) },
		func(d *crypt.Decoder) error { return shacrypt.RegisterDecoder(d) },
		func(d *crypt.Decoder) error { return bcrypt.RegisterDecoderStandard(d) },
		func(d *crypt.Decoder) error { return scrypt.RegisterDecoderYescrypt(d) },
		func(d *crypt.Decoder) error { return argon2.RegisterDecoderArgon2i(d) },
		func(d *crypt.Decoder) error { return argon2.RegisterDecoderArgon2id(d) },
	} {
		if err := reg(d); err != nil {
			return nil, err
		}
	}
	return d, nil
})

// verifyCrypt verifies a crypt(3) or PHC string ($1$, $5$, $6$, $2a/b/y$, $y$,
// $argon2i$, $argon2id$). The libraries compare digests in constant time.
func verifyCrypt(stored, password string) error {
	d, err := decoder()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnknownScheme, err)
	}
	digest, err := d.Decode(stored)
	if err != nil {
		return fmt.Errorf("%w: crypt string: %v", ErrMalformed, err)
	}
	ok, err := digest.MatchAdvanced(password)
	if err != nil {
		return fmt.Errorf("%w: crypt string: %v", ErrMalformed, err)
	}
	if !ok {
		return ErrMismatch
	}
	return nil
}

// maxPBKDF2Rounds bounds the CPU a (possibly hostile) stored entry can demand.
const maxPBKDF2Rounds = 10_000_000

// verifyPBKDF2 verifies Dovecot's {PBKDF2} format "$1$<salt>$<rounds>$<hex>":
// PBKDF2-HMAC-SHA1 with the salt used as its ASCII text and a 20-byte key
// (dovecot src/auth/password-scheme-pbkdf2.c).
func verifyPBKDF2(data, password string) error {
	parts := strings.Split(data, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "1" {
		return fmt.Errorf("%w: {PBKDF2} wants $1$salt$rounds$hex", ErrMalformed)
	}
	rounds, err := strconv.Atoi(parts[3])
	if err != nil || rounds < 1 || rounds > maxPBKDF2Rounds {
		return fmt.Errorf("%w: {PBKDF2} rounds %q", ErrMalformed, parts[3])
	}
	want, err := hex.DecodeString(parts[4])
	if err != nil || len(want) == 0 || len(want) > 64 {
		return fmt.Errorf("%w: {PBKDF2} key is not hex", ErrMalformed)
	}
	got, err := pbkdf2.Key(sha1.New, password, []byte(parts[2]), rounds, len(want))
	if err != nil {
		return fmt.Errorf("%w: {PBKDF2}: %v", ErrMalformed, err)
	}
	return equal(got, want)
}
