package authd

import (
	"crypto/pbkdf2"
	"testing"

	"github.com/dovetail-mail/dovetail/directory/password"
)

func saltedPassword(mech, pw string, salt []byte, iter int) []byte {
	h := password.SCRAMHash(mech)
	k, err := pbkdf2.Key(h, pw, salt, iter, h().Size())
	if err != nil {
		panic(err)
	}
	return k
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a\tb\nc\rd\x00e\x01f", "\x01", "\x01x"} {
		if got := unescape(escape(s)); got != s {
			t.Errorf("roundtrip %q → %q", s, got)
		}
	}
}
