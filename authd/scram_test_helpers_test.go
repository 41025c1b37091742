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

// RFC 5802 §5.1: a user name with "=" other than "=2C" or "=3D" MUST fail the
// exchange; it used to be looked up with the stray "=" kept.
func TestSASLName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"alice", "alice", true},
		{"a=2Cb=3Dc", "a,b=c", true},
		{"=3D2C", "=2C", true},
		{"a=b", "", false},
		{"a=2", "", false},
		{"a=", "", false},
		{"a=2c", "", false}, // the hex digits are upper-case
	} {
		got, ok := saslName(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("saslName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
