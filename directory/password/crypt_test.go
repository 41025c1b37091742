package password

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-crypt/crypt/algorithm/argon2"
)

// hostileYescrypt panicked go-crypt (makeslice: len out of range): the 'c'
// encodes N=2^41. Found by fuzzing mutated vectors.
const hostileYescrypt = "{CRYPT}$y$jcT$eYR63LhnSF9HGFdFSYTJA/$/T1Zg6bUsn58Mh2Sygu123L85Bqi6gQowTemgN53H7C"

// Valid hash tails (salt and digest) that the cost tests put behind their
// own parameters.
const (
	bcryptTail = "2rOIy/war1iTNs6u3IVWFORgYtz10WYnoENjw2Q/jYzww7TDdrSl."
	sha512Tail = "uDBlrw.Mx0ioJ44V$zlNBnx6U76xMVCNm5LWuZ/f/Z1QYvdYnOfb/cMKl7z7gn.DHwUVdGWQ1CQ1aA6Wh9JvvJSRDQSIMHdfdFsI160"
	sha256Tail = "V1GyyeAT3vbU2VJu$qOZoSVasnQxJk5gUuPTUzytrDVLqT8mDfpSn8L/Gmm9"
	argonTail  = "$BUVlwh/vZSjSScbaLsBNrQ$EDUHqEViCEiCINrAuHT0d04zvYcsgyDFj6gvDOAm7HQ"
	yesTail    = "$eYR63LhnSF9HGFdFSYTJA/$/T1Zg6bUsn58Mh2Sygu123L85Bqi6gQowTemgN53H7C"
)

// TestCryptHostileCosts: a stored hash with an absurd cost is malformed at once,
// never a panic, a huge allocation or a long hash.
func TestCryptHostileCosts(t *testing.T) {
	before := recoveredPanics.Load()
	for _, stored := range []string{
		hostileYescrypt,
		"{CRYPT}$y$jzT" + yesTail, // N=2^62
		"{CRYPT}$y$jET" + yesTail, // N=2^17, r=32: 512 MiB
		"{CRYPT}$y$j9z" + yesTail, // r=62
		"{CRYPT}$y$j9~" + yesTail, // not crypt base-64
		"{CRYPT}$y$j9T$x$y$z",
		"{CRYPT}$2y$31$" + bcryptTail,
		"{CRYPT}$2y$17$" + bcryptTail,
		"{CRYPT}$2y$03$" + bcryptTail,
		"{CRYPT}$2y$+5$" + bcryptTail,
		"{CRYPT}$6$rounds=999999999$" + sha512Tail,
		"{CRYPT}$6$rounds=5000001$" + sha512Tail,
		"{CRYPT}$5$rounds=18446744073709551616$" + sha256Tail,
		"{CRYPT}$5$rounds=1000,rounds=999999999$" + sha256Tail,
		"{ARGON2ID}$argon2id$v=19$m=4294967295,t=4294967,p=1" + argonTail,
		"{ARGON2ID}$argon2id$v=19$m=1048576,t=1,p=1" + argonTail, // 1 GiB
		"{ARGON2ID}$argon2id$v=19$m=262144,t=5,p=1" + argonTail,  // 256 MiB × 5 passes
		"{ARGON2ID}$argon2id$v=19$m=8,t=200000,p=1" + argonTail,
		"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=255" + argonTail,
		"{ARGON2ID}$argon2id$v=19$m=0,t=3,p=1" + argonTail,           // go-crypt: 32 MiB default
		"{ARGON2ID}$argon2id$v=19$t=3,p=1,m=8" + argonTail,           // order libsodium rejects
		"{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1,m=4194304" + argonTail, // go-crypt: last wins
		"{ARGON2ID}$argon2id$v=16$m=8,t=1,p=1" + argonTail,
		"{PBKDF2}$1$salt$10000001$c89a739cde4db7e856ce489306d90578a71dc89c",
		"{SCRAM-SHA-1}1000001,S+tMUm7k9ELnc0UbATFqnA==,q/qDdwrb2sjLgrLlnE6oJEZnTzg=,FyNZdQUweHDSP7raw7iXSHcDFN8=",
	} {
		start := time.Now()
		err := Verify(stored, "secret", "")
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(%q) = %v, want ErrMalformed", stored, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Verify(%q) took %v", stored, d)
		}
	}
	if n := recoveredPanics.Load() - before; n != 0 {
		t.Errorf("%d panics reached the hash libraries", n)
	}
}

// TestCryptCapsAdmitRealCosts: the caps sit well above what real setups write,
// and exactly where their comments say.
func TestCryptCapsAdmitRealCosts(t *testing.T) {
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"$2y$04$" + bcryptTail, true},
		{"$2b$12$" + bcryptTail, true},
		{"$2y$16$" + bcryptTail, true},
		{"$2y$17$" + bcryptTail, false},
		{"$5$rounds=5000000$" + sha256Tail, true},
		{"$5$rounds=5000001$" + sha256Tail, false},
		{"$argon2id$v=19$m=262144,t=3,p=1" + argonTail, true}, // doveadm pw -s ARGON2ID -r 3 (libsodium MODERATE)
		{"$argon2i$v=19$m=131072,t=6,p=1" + argonTail, true},  // doveadm pw -s ARGON2I -r 6
		{"$argon2id$v=19$m=262144,t=4,p=4" + argonTail, true},
		{"$argon2id$v=19$m=262144,t=5,p=1" + argonTail, false},
		{"$argon2id$v=19$m=1048576,t=4,p=1" + argonTail, false}, // doveadm -r 4 (SENSITIVE, 1 GiB)
		{"$argon2id$v=19$m=65536,t=3,p=64" + argonTail, true},
		{"$argon2id$v=19$m=65536,t=3,p=65" + argonTail, false},
		{"$y$j9T" + yesTail, true}, // libxcrypt default (cost 5): 16 MiB
		{"$y$jDT" + yesTail, true}, // cost 9: N=2^16, 256 MiB
		{"$y$jET" + yesTail, false},
		{"$y$jF5" + yesTail, true}, // N=2^18, r=8: 256 MiB
		{"$y$jG5" + yesTail, false},
	} {
		if err := checkCrypt(tc.s); (err == nil) != tc.ok {
			t.Errorf("checkCrypt(%q) = %v, want ok=%v", tc.s, err, tc.ok)
		}
	}
	if testing.Short() {
		return
	}
	// A real hash at the argon2 memory cap verifies (256 MiB, ~1 s).
	if err := Verify("{ARGON2ID}$argon2id$v=19$m=262144,t=3,p=1$0szukHGDPPQcU4J2T/QIMQ$NdFtrPDx2RmKjXvQst0ZPJGVBp0AbcHGano6JMl6eZM", "secret", ""); err != nil {
		t.Errorf("doveadm pw -s ARGON2ID -r 3: %v", err)
	}
}

// TestTruncatedHashes: a stored hash shorter than its algorithm's output would be
// compared as a shorter key, so some wrong passwords would match. Dovecot rejects
// these; so do we.
func TestTruncatedHashes(t *testing.T) {
	for _, stored := range []string{
		"{PBKDF2}$1$salt$1$ab",
		"{PBKDF2}$1$sK56264KEIp2LFlY$5000$c89a739cde4db7e856ce489306d90578a71dc8",     // 19 bytes
		"{PBKDF2}$1$sK56264KEIp2LFlY$5000$c89a739cde4db7e856ce489306d90578a71dc89c00", // 21 bytes
		"{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$BUVlwh/vZSjSScbaLsBNrQ$ED",
		"{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$BUVlwh/vZSjSScbaLsBNrQ$EDUHqEViCEiCINrAuHT0", // 15 bytes
		"{ARGON2I}$argon2i$v=19$m=8,t=1,p=1$nwpSSIkD6LKaXew70PUUzA$",
		"{CRYPT}$y$j7T$eYR63LhnSF9HGFdFSYTJA/$/.",
		"{CRYPT}$y$j9T$eYR63LhnSF9HGFdFSYTJA/$/T1Zg6bUsn58Mh2Sygu123L85Bqi6gQowTemgN53H7",
		"{CRYPT}$1$NGZSeYcH$ALHRJK5ZFfg4Fo9EbPOGF",
		"{CRYPT}$5$7OLnsOTa9nSdAdT.$I3BcMYlOIyXtRdjEp8Q/2dNA6w8PYWeAf981e.vOX9",
		"{CRYPT}$6$dxfgCnrrcKFHq/5K$wfaiyiBHfuC411NC3ptye2LedgZWOZQUgzj3R0v7a9m714dVEjmjhBuSTVKUHj9Wgwaqy/0TgJ/DG2fs6TYAz",
		"{CRYPT}$2y$05$2rOIy/war1iTNs6u3IVWFORgYtz10WYnoENjw2Q/jYzww7TDdrSl",
		"{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b",
		"{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unol==",
		"{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee",
	} {
		if err := Verify(stored, "secret", ""); !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(%q, right password) = %v, want ErrMalformed", stored, err)
		}
	}
}

// TestGuardPanic: a panic inside hash code becomes ErrMalformed, not a crash.
func TestGuardPanic(t *testing.T) {
	before := recoveredPanics.Load()
	ok, err := guardPanic(func() (bool, error) {
		var key []byte
		return key[len(key)] == 0, nil // a runtime error, as go-crypt's makeslice was
	})
	if ok || err == nil {
		t.Fatalf("guardPanic = %v, %v", ok, err)
	}
	if recoveredPanics.Load() != before+1 {
		t.Error("panic not counted")
	}
}

// TestDovecotFormats: values doveadm pw -t verifies for "secret" (LDAP-MD5 is
// what doveadm pw -s LDAP-MD5 writes).
func TestDovecotFormats(t *testing.T) {
	for _, stored := range []string{
		"{LDAP-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
		"{LDAP-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
		"{PLAIN-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
		"{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
		"{CRAM-MD5}zTun3qrW5cojRIukLjeXR6ng9/H7wAyKgbuqw5VzG1Y=",
		"{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
		"{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
		"{MD5}$1$NGZSeYcH$ALHRJK5ZFfg4Fo9EbPOGF1",
	} {
		if err := Verify(stored, "secret", ""); err != nil {
			t.Errorf("Verify(%q, right password) = %v", stored, err)
		}
		if err := Verify(stored, "secreT", ""); !errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%q, wrong password) = %v, want ErrMismatch", stored, err)
		}
	}
	// {MD5} is MD5-CRYPT or PLAIN-MD5 only, not any crypt family.
	if err := Verify("{MD5}$5$7OLnsOTa9nSdAdT.$I3BcMYlOIyXtRdjEp8Q/2dNA6w8PYWeAf981e.vOX9C", "secret", ""); err == nil {
		t.Error("{MD5} accepted a SHA256-CRYPT value")
	}
	e, err := Parse("{CRAM-MD5}zTun3qrW5cojRIukLjeXR6ng9/H7wAyKgbuqw5VzG1Y=", "")
	if err != nil {
		t.Fatal(err)
	}
	if ctx, err := e.CRAMMD5Secret(); err != nil || ctx != CRAMMD5Context("secret") {
		t.Errorf("CRAMMD5Secret from base64 = %x, %v", ctx, err)
	}
}

// Every login attempt ran its hash at once: a memory-hard one holds its whole
// cost meanwhile (Dovecot's ARGON2ID 64 MiB), so a hundred SMTP clients
// guessing one account's password needed over 6 GiB. At most one
// verification per CPU runs now; the others wait their turn.
func TestCryptConcurrencyBounded(t *testing.T) {
	const memKiB = 16 << 10
	h, err := argon2.New(argon2.WithVariantID(), argon2.WithM(memKiB), argon2.WithT(2), argon2.WithP(1))
	if err != nil {
		t.Fatal(err)
	}
	d, err := h.Hash("secret")
	if err != nil {
		t.Fatal(err)
	}
	stored := "{ARGON2ID}" + d.Encode()
	if err := Verify(stored, "secret", ""); err != nil {
		t.Fatal(err)
	}
	slots := cap(hashSlots)
	n := 4*slots + 8
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Verify(stored, fmt.Sprint("guess", i), ""); !errors.Is(err, ErrMismatch) {
				t.Errorf("guess %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	// The heap keeps the peak it reached (memory is given back lazily).
	if grew, most := int64(after.Sys)-int64(before.Sys), int64(slots+4)*memKiB<<10; grew > most {
		t.Errorf("%d concurrent argon2 checks of %d MiB grew the process by %d MiB, want at most %d MiB (%d at a time)",
			n, memKiB>>10, grew>>20, most>>20, slots)
	}

	// A caller whose deadline passes while it waits gets an error that is
	// neither a mismatch nor a malformed entry.
	for range slots {
		hashSlots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	err = VerifyContext(ctx, stored, "secret", "")
	cancel()
	for range slots {
		<-hashSlots
	}
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrMismatch) || errors.Is(err, ErrMalformed) {
		t.Errorf("verification without a free slot: %v, want the deadline's error", err)
	}
}
