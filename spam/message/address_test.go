package message

import "testing"

func TestParseMailbox(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a@b.example", "a@b.example"},
		{`"<x@evil.example>" <a@b.example>`, "a@b.example"},
		{"Shop [News] <a@b.example>", "a@b.example"},
		{"Doe, John <a@b.example> (work)", "a@b.example"},
		{`"PayPal" <a@b.example> (@evil.example`, ""},
		{"x@evil.example <a@b.example>", ""},
		{"A <a@b.example> <x@evil.example>", ""},
		{"a@b.example, x@evil.example", ""},
		{"Someone <nobody>", ""},
		{"undisclosed-recipients:;", ""},
		{"", ""},
	} {
		got, err := ParseMailbox(tc.in)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("%q: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
