package message

import (
	"mime"
	"testing"
)

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
