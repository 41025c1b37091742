package password

import (
	"bufio"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

type vector struct{ password, stored string }

func loadVectors(t testing.TB) []vector {
	t.Helper()
	f, err := os.Open("testdata/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, s, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("bad vector line %q", line)
		}
		out = append(out, vector{p, s})
	}
	return out
}

// TestDoveadmVectors verifies every vector produced by Dovecot's doveadm pw (and
// libxcrypt for $y$), and that a wrong password is rejected.
func TestDoveadmVectors(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) < 100 {
		t.Fatalf("only %d vectors", len(vs))
	}
	seen := map[string]bool{}
	for _, v := range vs {
		e, err := Parse(v.stored, "")
		if err != nil {
			t.Errorf("Parse(%q): %v", v.stored, err)
			continue
		}
		name := v.stored
		if i := strings.IndexByte(name, '}'); i > 0 {
			name = name[:i+1]
		}
		seen[name] = true
		if err := e.Verify(v.password); err != nil {
			t.Errorf("%s: Verify(%q, right password) = %v", v.stored, v.password, err)
		}
		if err := e.Verify(v.password + "x"); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: Verify(wrong password) = %v, want ErrMismatch", v.stored, err)
		}
	}
	for _, s := range []string{"{PLAIN}", "{CLEARTEXT}", "{SHA}", "{SSHA}", "{SSHA256}", "{SSHA512}", "{CRYPT}",
		"{MD5-CRYPT}", "{SHA256-CRYPT}", "{SHA512-CRYPT}", "{BLF-CRYPT}", "{ARGON2I}", "{ARGON2ID}", "{PBKDF2}",
		"{CRAM-MD5}", "{SSHA.B64}", "{SHA.HEX}", "{SCRAM-SHA-1}", "{SCRAM-SHA-256}"} {
		if !seen[s] {
			t.Errorf("no vector for %s", s)
		}
	}
}

func TestCRAMMD5MatchesHMAC(t *testing.T) {
	for _, pw := range []string{"", "secret", strings.Repeat("k", 64), strings.Repeat("long key ", 20)} {
		ctx := CRAMMD5Context(pw)
		ch := []byte("<1896.697170952@postoffice.example.net>")
		m := hmac.New(md5.New, []byte(pw))
		m.Write(ch)
		if err := VerifyCRAMMD5(ctx, ch, hex.EncodeToString(m.Sum(nil))); err != nil {
			t.Errorf("pw %q: %v", pw, err)
		}
		if err := VerifyCRAMMD5(ctx, ch, strings.Repeat("0", 32)); !errors.Is(err, ErrMismatch) {
			t.Errorf("pw %q: zero digest accepted", pw)
		}
	}
	// RFC 2195 example: tanstaaftanstaaf / <1896.697170952@postoffice.reston.mci.net>
	ctx := CRAMMD5Context("tanstaaftanstaaf")
	if err := VerifyCRAMMD5(ctx, []byte("<1896.697170952@postoffice.reston.mci.net>"), "b913a602c7eda7a495b4e6e7334d3890"); err != nil {
		t.Errorf("RFC 2195 example: %v", err)
	}
	// Dovecot's own context for "secret" (doveadm pw -s CRAM-MD5) equals ours.
	if got := hex.EncodeToString(func() []byte { c := CRAMMD5Context("secret"); return c[:] }()); got != "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56" {
		t.Errorf("context = %s", got)
	}
}

func TestSCRAMFromDoveadm(t *testing.T) {
	for _, v := range loadVectors(t) {
		e, _ := Parse(v.stored, "")
		if e.Scheme != "SCRAM-SHA-1" && e.Scheme != "SCRAM-SHA-256" {
			continue
		}
		c, err := e.SCRAMSecret(e.Scheme)
		if err != nil {
			t.Fatal(err)
		}
		d, err := SCRAMFromPassword(e.Scheme, v.password, c.Salt, c.Iterations)
		if err != nil || !hmac.Equal(d.StoredKey, c.StoredKey) || !hmac.Equal(d.ServerKey, c.ServerKey) {
			t.Errorf("%s: derived keys differ (%v)", v.stored, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		stored, def string
		want        error
	}{
		{"{NOPE}x", "", ErrUnknownScheme},
		{"{SHA.ROT13}x", "", ErrUnknownScheme},
		{"{SHA", "", ErrMalformed},
		{"plainvalue", "", ErrUnknownScheme},
		{"{SHA}!!!", "", ErrMalformed},
		{"{SHA}c2VjcmV0", "", ErrMalformed},                      // wrong digest size
		{"{SSHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "", ErrMalformed}, // no salt
		{"{PBKDF2}$1$salt$0$00", "", ErrMalformed},
		{"{PBKDF2}$1$salt$99999999999$00", "", ErrMalformed},
		{"{CRYPT}$9$nope", "", ErrMalformed},
		{"{SCRAM-SHA-1}1,a", "", ErrMalformed},
		{"{CRAM-MD5}zz", "", ErrMalformed},
	} {
		err := Verify(tc.stored, "secret", tc.def)
		if !errors.Is(err, tc.want) {
			t.Errorf("Verify(%q) = %v, want %v", tc.stored, err, tc.want)
		}
	}
	// default scheme applies to values without {…}
	if err := Verify("secret", "secret", "PLAIN"); err != nil {
		t.Errorf("default PLAIN: %v", err)
	}
	if err := Verify("5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret", "sha"); err != nil {
		t.Errorf("default SHA: %v", err)
	}
	// Dovecot accepts hex for a base64-default digest when the length says so.
	if err := Verify("{SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4", "secret", ""); err != nil {
		t.Errorf("hex SHA without suffix: %v", err)
	}
	if err := Verify("{PLAIN}"+strings.Repeat("a", 5000), strings.Repeat("a", 5000), ""); !errors.Is(err, ErrMismatch) {
		t.Errorf("over-long password accepted: %v", err)
	}
}

func TestPlaintextEquivalent(t *testing.T) {
	for _, tc := range []struct {
		stored, mech string
		want         bool
	}{
		{"{PLAIN}x", "CRAM-MD5", true},
		{"{PLAIN}x", "SCRAM-SHA-256", true},
		{"{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56", "CRAM-MD5", true},
		{"{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56", "SCRAM-SHA-1", false},
		{"{SSHA}dOiHfu7KYmek5e+ZkHo+1Qu5XFCkSNss", "CRAM-MD5", false},
		{"{SCRAM-SHA-1}4096,S+tMUm7k9ELnc0UbATFqnA==,q/qDdwrb2sjLgrLlnE6oJEZnTzg=,FyNZdQUweHDSP7raw7iXSHcDFN8=", "SCRAM-SHA-1", true},
	} {
		e, err := Parse(tc.stored, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := e.PlaintextEquivalent(tc.mech); got != tc.want {
			t.Errorf("%s/%s = %v", tc.stored, tc.mech, got)
		}
	}
}

// FuzzVerify feeds mutated stored entries to Verify. The cost caps are shrunk so
// that the expensive KDFs (bcrypt, sha-crypt, yescrypt, argon2, PBKDF2, SCRAM)
// are fuzzed too, down into the hash libraries, rather than skipped: that is
// where a hostile yescrypt N panicked the process. Seeds are every doveadm vector
// plus the inputs that once broke Verify (also in testdata/fuzz/FuzzVerify).
func FuzzVerify(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.stored, v.password)
	}
	for _, s := range []string{"{PLAIN}x", "{PBKDF2}$1$a$1$00", "{SCRAM-SHA-1}1,AA==,AA==,AA==", "$1$abc$def", "{SSHA.HEX}00",
		hostileYescrypt, "{CRYPT}$y$j7T$eYR63LhnSF9HGFdFSYTJA/$/.", "{PBKDF2}$1$salt$1$ab",
		"{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$BUVlwh/vZSjSScbaLsBNrQ$ED", "{CRYPT}$2y$31$2rOIy/war1iTNs6u3IVWFORgYtz10WYnoENjw2Q/jYzww7TDdrSl.",
		"{CRYPT}$y$j75$eYR63LhnSF9HGFdFSYTJA/$/T1Zg6bUsn58Mh2Sygu123L85Bqi6gQowTemgN53H7C",
		"{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$BUVlwh/vZSjSScbaLsBNrQ$EDUHqEViCEiCINrAuHT0d04zvYcsgyDFj6gvDOAm7HQ"} {
		f.Add(s, "secret")
	}
	saved := limits
	limits = costLimits{bcryptCost: 5, shaCryptRounds: 5000, argon2MemoryKiB: 256, argon2WorkKiB: 1024, argon2Lanes: 4,
		yescryptMemory: 1 << 20, pbkdf2Rounds: 5000, scramIterations: 4096}
	f.Cleanup(func() { limits = saved })
	f.Fuzz(func(t *testing.T, stored, pw string) {
		before := recoveredPanics.Load()
		err := Verify(stored, pw, "")
		if n := recoveredPanics.Load() - before; n != 0 {
			t.Fatalf("Verify(%q) panicked in a hash library: %v", stored, err)
		}
		if err != nil && !errors.Is(err, ErrMismatch) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownScheme) {
			t.Fatalf("Verify(%q) = unclassified error %v", stored, err)
		}
		// A full-length hash matches one password; a truncated one would match
		// many. (bcrypt legitimately ignores bytes past the 72nd.)
		if err == nil && len(pw) < 72 {
			if err := Verify(stored, pw+"\x01", ""); err == nil {
				t.Fatalf("Verify(%q) accepts both %q and %q", stored, pw, pw+"\x01")
			}
		}
	})
}
