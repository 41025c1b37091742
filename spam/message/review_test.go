package message

import (
	"mime"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFindTextURIs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"see http://a.example/x and HTTPS://B.example.", []string{"http://a.example/x", "HTTPS://B.example."}},
		{"www.c.example, xwww.d.example and (www.e.example)", []string{"www.c.example,", "www.e.example)"}},
		{"mailto:x@f.example ftp://g.example", []string{"mailto:x@f.example", "ftp://g.example"}},
		{"http:// alone, then Www.h.example", []string{"Www.h.example"}},
		{"İİİ http://i.example ſ www.j.example", []string{"http://i.example", "www.j.example"}},
		{"nothing here", nil},
	} {
		if got := findTextURIs(tc.in, 100); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := findTextURIs(strings.Repeat("http://k.example ", 10), 3); len(got) != 3 {
		t.Errorf("limit: %d URIs", len(got))
	}
}

// Text full of openings that do not start a URI used to cost quadratic time
// (976 KiB of "xwww." took 13 s), outside any scan timeout.
func TestFindTextURIsLinear(t *testing.T) {
	for _, unit := range []string{"xwww.", "http:", "m", "wwwwww"} {
		body := strings.Repeat(unit, 1<<20/len(unit))
		start := time.Now()
		m := Parse([]byte("Subject: x\n\n"+body), Limits{ScanSize: 2 << 20})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%q × %d: parse took %v", unit, len(body)/len(unit), d)
		}
		if len(m.URIs) != 0 {
			t.Errorf("%q: %d URIs", unit, len(m.URIs))
		}
	}
}

// One encoded-word in an unknown charset leaves that word raw, not the
// whole field; the anomaly is still recorded.
func TestDecodeWordsPerWord(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
		bad       bool
	}{
		{"=?utf-8?Q?V=49AGRA?= =?x-bogus?Q?hi?=", "VIAGRA =?x-bogus?Q?hi?=", true},
		{"=?x-bogus?Q?hi?= =?utf-8?Q?V=49AGRA?=", "=?x-bogus?Q?hi?= VIAGRA", true},
		{"a =?utf-8?B?w6k=?= =?utf-8?Q?b?= c", "a éb c", false},
		{"=?iso-8859-1?Q?caf=E9?= ok", "café ok", false},
		{"=?utf-8?X?bad?= =?utf-8?Q?x?=", "=?utf-8?X?bad?= x", false},
		{"no words =? here", "no words =? here", false},
		{"=?utf-8?Q?unterminated", "=?utf-8?Q?unterminated", false},
	} {
		got, bad := decodeWords(tc.raw)
		if got != tc.want || bad != tc.bad {
			t.Errorf("%q: %q bad=%v, want %q bad=%v", tc.raw, got, bad, tc.want, tc.bad)
		}
		// Where the standard decoder succeeds, the result is the same.
		if std, err := (&mime.WordDecoder{}).DecodeHeader(tc.raw); err == nil && !tc.bad && std != got {
			t.Errorf("%q: %q, mime says %q", tc.raw, got, std)
		}
	}
	m := Parse([]byte("Subject: =?utf-8?Q?V=49AGRA?= =?x-bogus?Q?hi?=\n\nbody"), Limits{})
	if got := m.Subject(); got != "VIAGRA =?x-bogus?Q?hi?=" || !m.Has(AnomalyBadCharset) {
		t.Errorf("Subject %q, anomalies %v", got, m.Anomalies)
	}
}

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
