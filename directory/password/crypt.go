package password

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-crypt/crypt"
	"github.com/go-crypt/crypt/algorithm/argon2"
	"github.com/go-crypt/crypt/algorithm/bcrypt"
	"github.com/go-crypt/crypt/algorithm/md5crypt"
	"github.com/go-crypt/crypt/algorithm/scrypt"
	"github.com/go-crypt/crypt/algorithm/shacrypt"
)

// costLimits bounds the work one verification may do. A stored hash is not
// trusted input: users often may rewrite their own userPassword (LDAP self-write
// ACLs), and every login attempt against an entry pays its cost again, so an
// unbounded parameter turns one entry into a denial of service (bcrypt cost 31
// runs for days, argon2 m=4 GiB allocates 4 GiB per attempt, a huge yescrypt N
// panics the process). An entry over a cap is ErrMalformed, never a long hash.
type costLimits struct {
	bcryptCost      int    // log2 of the rounds
	shaCryptRounds  uint64 // $5$ / $6$ rounds=
	argon2MemoryKiB uint64 // m=
	argon2WorkKiB   uint64 // m × t: the memory traffic, i.e. the CPU time
	argon2Lanes     uint64 // p=: goroutines and a memory floor of 8 KiB each
	yescryptMemory  uint64 // 128·r·N bytes
	pbkdf2Rounds    int
	scramIterations int
}

// defaultLimits admit every cost that Dovecot, libxcrypt and libsodium write by
// default, with a wide margin, and stop at about a second or two of CPU.
var defaultLimits = costLimits{
	// Dovecot's BLF-CRYPT and libxcrypt default to 5, PHP and OpenBSD to 10–12;
	// each step doubles the time and 16 already takes several seconds.
	bcryptCost: 16,
	// glibc/libxcrypt default to 5000; hardened login.defs use up to ~500k.
	shaCryptRounds: 5_000_000,
	// Dovecot writes m=64 MiB (ARGON2ID) and 32 MiB (ARGON2I); libsodium's
	// MODERATE level is 256 MiB. Its SENSITIVE 1 GiB is not worth per login.
	argon2MemoryKiB: 256 << 10,
	// libsodium MODERATE (256 MiB × 3 passes, argon2i 128 MiB × 6) fits.
	argon2WorkKiB: 1 << 20,
	// libsodium and Dovecot use 1 lane, most other tools 1–8.
	argon2Lanes: 64,
	// libxcrypt's default cost 5 is N=2^12, r=32 (16 MiB); 256 MiB admits its
	// cost ≤ 9 and matches the argon2 cap.
	yescryptMemory: 256 << 20,
	// Dovecot's {PBKDF2} default is 5000 rounds.
	pbkdf2Rounds: 10_000_000,
	// RFC 7677 and Dovecot use 4096.
	scramIterations: 1_000_000,
}

// limits is a variable so the fuzz target can shrink the caps and still reach
// the hash libraries with every parameter combination in reasonable time.
var limits = defaultLimits

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

// recoveredPanics counts panics caught in the hash libraries, so the fuzz target
// still reports an input that slipped past checkCrypt.
var recoveredPanics atomic.Int64

// hashSlots bounds the crypt verifications that run at once to the CPUs
// there are to run them. The memory-hard ones (argon2, yescrypt) hold their
// whole memory cost while they run — Dovecot's ARGON2ID 64 MiB — and every
// SMTP connection may have one in progress, so a hundred concurrent guesses
// against one account needed over 6 GiB; more at once than CPUs buys no
// throughput anyway. (Dovecot bounds them by its auth worker processes.)
var hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// verifyCrypt verifies a crypt(3) or PHC string ($1$, $5$, $6$, $2a/b/y$, $y$,
// $argon2i$, $argon2id$). The libraries compare digests in constant time.
func verifyCrypt(ctx context.Context, stored, password string) error {
	if err := checkCrypt(stored); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("password: not verified: %w", err)
	}
	select {
	case hashSlots <- struct{}{}:
		defer func() { <-hashSlots }()
	case <-ctx.Done():
		return fmt.Errorf("password: no hash slot free in time: %w", ctx.Err())
	}
	d, err := decoder()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnknownScheme, err)
	}
	ok, err := guardPanic(func() (bool, error) {
		digest, err := d.Decode(stored)
		if err != nil {
			return false, err
		}
		return digest.MatchAdvanced(password)
	})
	if err != nil {
		return fmt.Errorf("%w: crypt string: %v", ErrMalformed, err)
	}
	if !ok {
		return ErrMismatch
	}
	return nil
}

// guardPanic turns a panic in third-party hash code into an error: checkCrypt is
// meant to keep every such input out, but a login must never take the daemon
// down if it misses one. (It cannot catch a panic in a goroutine the library
// starts, nor an out-of-memory abort; the caps are what prevents those.)
func guardPanic(f func() (bool, error)) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			recoveredPanics.Add(1)
			ok, err = false, fmt.Errorf("hash library panicked: %v", r)
		}
	}()
	return f()
}

// checkCrypt accepts a crypt string only in the exact form its reference
// implementation (libxcrypt, libsodium) writes, with costs under limits and a
// full-length hash. The strict form matters: go-crypt parses leniently (default
// parameters for missing ones, the last of repeated ones) and compares only as
// many bytes as the stored key has, so a truncated key would match one wrong
// password in 2^(8·len).
func checkCrypt(s string) error {
	f := strings.Split(s, "$")
	if len(f) < 3 || f[0] != "" {
		return fmt.Errorf("%w: crypt string must look like $id$…", ErrMalformed)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: crypt $%s$: %s", ErrMalformed, f[1], fmt.Sprintf(format, args...))
	}
	switch f[1] {
	case "1": // $1$salt$hash
		if len(f) != 4 || len(f[3]) != 22 {
			return bad("want salt and a 22-character hash")
		}
	case "5", "6": // $5$[rounds=N$]salt$hash
		if len(f) == 5 {
			v, ok := strings.CutPrefix(f[2], "rounds=")
			n, err := strconv.ParseUint(v, 10, 64)
			if !ok || err != nil {
				return bad("bad rounds %q", f[2])
			}
			if n > limits.shaCryptRounds {
				return bad("rounds %d exceed the limit of %d", n, limits.shaCryptRounds)
			}
		} else if len(f) != 4 {
			return bad("want [rounds=N$]salt$hash")
		}
		want := 43
		if f[1] == "6" {
			want = 86
		}
		if n := len(f[len(f)-1]); n != want {
			return bad("hash is %d characters, want %d", n, want)
		}
	case "2", "2a", "2b", "2x", "2y": // $2y$NN$<22 salt><31 hash>
		if len(f) != 4 || len(f[2]) != 2 || !isDigits(f[2]) {
			return bad("want $NN$ cost and salt+hash")
		}
		cost, _ := strconv.Atoi(f[2])
		if cost < 4 || cost > limits.bcryptCost {
			return bad("cost %d outside 4..%d", cost, limits.bcryptCost)
		}
		if len(f[3]) != 53 {
			return bad("salt and hash are %d characters, want 53", len(f[3]))
		}
	case "y":
		return checkYescrypt(f, bad)
	case "argon2i", "argon2id":
		return checkArgon2(f, bad)
	default:
		return bad("unsupported algorithm")
	}
	return nil
}

// yescryptAlphabet is crypt(3)'s base-64 alphabet, which yescrypt also uses for
// its parameters.
const yescryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// checkYescrypt: $y$<flags><log2 N - 1><r - 1>$salt$hash, the only parameter
// form libxcrypt writes (and go-crypt reads).
func checkYescrypt(f []string, bad func(string, ...any) error) error {
	if len(f) != 5 || len(f[2]) != 3 || f[2][0] != 'j' {
		return bad("want $j<N><r>$salt$hash")
	}
	n, rr := strings.IndexByte(yescryptAlphabet, f[2][1]), strings.IndexByte(yescryptAlphabet, f[2][2])
	if n < 0 || rr < 0 {
		return bad("bad parameters %q", f[2])
	}
	logN, r := uint64(n)+1, uint64(rr)+1
	// go-crypt supports r ≤ 32; bounding logN first keeps the shift from overflowing.
	if r > 32 || logN > 40 || 128*r<<logN > limits.yescryptMemory {
		return bad("N=2^%d, r=%d exceed the memory limit of %d bytes", logN, r, limits.yescryptMemory)
	}
	// A full 256-bit hash; go-crypt would compare a shorter one as a shorter key.
	if len(f[4]) != 43 || strings.Trim(f[4], yescryptAlphabet) != "" {
		return bad("hash is not 43 characters of crypt base-64")
	}
	return nil
}

// checkArgon2: $argon2id$v=19$m=M,t=T,p=P$salt$hash, the form libsodium (and so
// Dovecot) writes and requires.
func checkArgon2(f []string, bad func(string, ...any) error) error {
	if len(f) != 6 || f[2] != "v=19" {
		return bad("want $v=19$m=M,t=T,p=P$salt$hash")
	}
	var mtp [3]uint64
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return bad("want m=M,t=T,p=P")
	}
	for i, key := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(params[i], key)
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || n == 0 {
			return bad("bad parameter %q", params[i])
		}
		mtp[i] = n
	}
	m, t, p := mtp[0], mtp[1], mtp[2]
	// The library rounds memory up to 8 KiB per lane.
	if p > limits.argon2Lanes || m > limits.argon2MemoryKiB || max(m, 8*p)*t > limits.argon2WorkKiB {
		return bad("m=%d,t=%d,p=%d exceed the limits (m ≤ %d KiB, m·t ≤ %d, p ≤ %d)",
			m, t, p, limits.argon2MemoryKiB, limits.argon2WorkKiB, limits.argon2Lanes)
	}
	// libsodium rejects tags under 16 bytes (ARGON2_MIN_OUTLEN) and writes 32.
	key, err := base64.RawStdEncoding.DecodeString(f[5])
	if err != nil || len(key) < 16 {
		return bad("hash is not at least 16 bytes of base64")
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// verifyPBKDF2 verifies Dovecot's {PBKDF2} format "$1$<salt>$<rounds>$<hex>":
// PBKDF2-HMAC-SHA1 with the salt used as its ASCII text and a 20-byte key
// (dovecot src/auth/password-scheme-pbkdf2.c).
func verifyPBKDF2(data, password string) error {
	parts := strings.Split(data, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "1" {
		return fmt.Errorf("%w: {PBKDF2} wants $1$salt$rounds$hex", ErrMalformed)
	}
	rounds, err := strconv.Atoi(parts[3])
	if err != nil || rounds < 1 || rounds > limits.pbkdf2Rounds {
		return fmt.Errorf("%w: {PBKDF2} rounds %q", ErrMalformed, parts[3])
	}
	// Dovecot insists on the full SHA-1 length ("PBKDF2 hash not 160bit
	// hex-encoded"); comparing a shorter key would let wrong passwords through.
	want, err := hex.DecodeString(parts[4])
	if err != nil || len(want) != sha1.Size {
		return fmt.Errorf("%w: {PBKDF2} key is not 40 hex digits", ErrMalformed)
	}
	got, err := pbkdf2.Key(sha1.New, password, []byte(parts[2]), rounds, len(want))
	if err != nil {
		return fmt.Errorf("%w: {PBKDF2}: %v", ErrMalformed, err)
	}
	return equal(got, want)
}
