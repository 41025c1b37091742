package message

import (
	"mime"
	"strings"
	"testing"
	"time"
)

// parseBudget bounds the parse of a hostile megabyte in the linear-time
// tests: the quadratic costs they guard against took 11-17 s plain, and
// several times that under the race detector, far above either bound.
const parseBudget = 2 * time.Second * raceSlowdown

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

// A header full of "=?cs?Q?" openings whose text never ends in "?=" used to
// cost quadratic time (980 KB of "=?x?Q?a" took 11 s), in parsing, outside
// any scan timeout: every opening searched to the end of the value for "?=".
// An encoded text holds no '?', so each word ends at its next '?'.
func TestDecodeWordsLinear(t *testing.T) {
	for _, unit := range []string{"=?x?Q?a", "=?utf-8?q?a?b", "=?a?", "=?=?"} {
		v := strings.Repeat(unit, 1<<20/len(unit)) + "?="
		start := time.Now()
		m := Parse([]byte("Subject: "+v+"\n\nbody\n"), Limits{ScanSize: 2 << 20})
		if d := time.Since(start); d > parseBudget {
			t.Errorf("%q × %d: parse took %v", unit, len(v)/len(unit), d)
		}
		if m.Subject() != v {
			t.Errorf("%q: Subject changed", unit)
		}
	}
	// A malformed opening does not hide a well-formed word after it.
	for raw, want := range map[string]string{
		"=?x?Q?a?b =?utf-8?Q?V=49AGRA?=": "=?x?Q?a?b VIAGRA",
		"=?utf-8?Q?a?b?= =?utf-8?Q?c?=":  "=?utf-8?Q?a?b?= c",
	} {
		if got, _ := decodeWords(raw); got != want {
			t.Errorf("%q: %q, want %q", raw, got, want)
		}
	}
}

// A field folded over many lines used to cost quadratic time: each
// continuation line copied the value gathered so far (480 KB of " b" lines
// took 17 s, in parsing, outside any scan timeout).
func TestFoldedHeaderLinear(t *testing.T) {
	const n = 300000
	raw := "Subject: a\n" + strings.Repeat(" b\n", n) + "To: c\n\nbody\n"
	start := time.Now()
	m := Parse([]byte(raw), Limits{ScanSize: 2 << 20})
	if d := time.Since(start); d > parseBudget {
		t.Errorf("%d continuation lines: parse took %v", n, d)
	}
	if want := "a" + strings.Repeat(" b", n); m.Subject() != want || m.Header.Get("To") != "c" {
		t.Errorf("Subject of %d bytes, want %d; To %q", len(m.Subject()), len(want), m.Header.Get("To"))
	}
}

// TestDamagedUTF8 : UTF-8 text with a stray invalid byte is UTF-8 with one
// damaged character, not Windows-1252 — reading all of it as 1252 turned
// every Cyrillic or CJK word into mojibake, so one byte appended by a
// spammer hid the text from body rules and Bayes. Text whose 8-bit bytes are
// never UTF-8 (a Latin-1 part labelled utf-8 or not at all) is still read
// as Windows-1252.
func TestDamagedUTF8(t *testing.T) {
	for _, tc := range []struct{ charset, body, want string }{
		{"utf-8", "Привет, дешевые таблетки \xff", "Привет, дешевые таблетки \uFFFD"},
		{"", "Привет \xe9 мир", "Привет \uFFFD мир"},
		{"utf-8", "caf\xe9 cr\xe8me", "café crème"},
		{"", "caf\xe9", "café"},
	} {
		ct := "text/plain"
		if tc.charset != "" {
			ct += "; charset=" + tc.charset
		}
		m := Parse([]byte("Subject: x\nContent-Type: "+ct+"\n\n"+tc.body+"\n"), Limits{})
		if got := strings.TrimSpace(m.Text); got != tc.want {
			t.Errorf("%s %q: text %q, want %q", tc.charset, tc.body, got, tc.want)
		}
	}
	m := Parse([]byte("Subject: \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xff\n\nx\n"), Limits{})
	if got := m.Subject(); got != "Привет \uFFFD" {
		t.Errorf("raw 8-bit Subject %q", got)
	}
}

// A parameter list that mime.ParseMediaType refuses as a whole (a duplicate
// parameter, one unquoted value with a space) still yields its other
// parameters read as that function reads them, RFC 2231 encodings and
// continuations included: mail clients show "invoice.exe" for these, and the
// executable-attachment rules must see it too. Before, the fallback knew only
// a plain filename=, so the RFC 2231 forms hid the name.
func TestMalformedParamsKeepRFC2231(t *testing.T) {
	for _, tc := range []struct{ ct, cd, want, boundary string }{
		{"application/octet-stream", `attachment; filename*=UTF-8''invoice.exe; filename*=UTF-8''invoice.exe`, "invoice.exe", ""},
		{"application/octet-stream", `attachment; size=12 34; filename*0="invoice"; filename*1=".exe"`, "invoice.exe", ""},
		{"application/octet-stream", `attachment; filename*=utf-8''r%C3%A9sum%C3%A9.exe; creation-date=Mon, 1 Jan`, "résumé.exe", ""},
		{`application/octet-stream; name*=UTF-8''invoice.exe; comment=a b`, "attachment", "invoice.exe", ""},
		{`application/octet-stream; x=a b; name="in;voice.exe"`, "attachment", "in;voice.exe", ""},
	} {
		raw := "From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n" +
			"--b\nContent-Type: text/plain\n\nhello\n" +
			"--b\nContent-Type: " + tc.ct + "\nContent-Disposition: " + tc.cd + "\nContent-Transfer-Encoding: base64\n\nTVqQAAMAAAAEAAAA\n--b--\n"
		m := Parse([]byte(raw), Limits{})
		if len(m.Parts) != 2 {
			t.Fatalf("%s / %s: %d parts", tc.ct, tc.cd, len(m.Parts))
		}
		if got := m.Parts[1].Filename; got != tc.want {
			t.Errorf("%s / %s: filename %q, want %q", tc.ct, tc.cd, got, tc.want)
		}
	}
	// The multipart boundary itself survives a bad neighbour, with
	// continuations.
	m := Parse([]byte("From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; x=a b; boundary*0=\"zz\"; boundary*1=\"yy\"\n\n--zzyy\n\nspam text\n--zzyy--\n"), Limits{})
	if len(m.Parts) != 1 || m.Text != "spam text" || m.Has(AnomalyMissingBoundary) || !m.Has(AnomalyBadContentType) {
		t.Errorf("boundary after a bad parameter: %d parts, text %q, anomalies %v", len(m.Parts), m.Text, m.Anomalies)
	}
}

// Content-Type and Content-Disposition parameters are read as written: RFC
// 2047 §5 forbids encoded-words there, and "=?" and "?=" are boundary
// characters (RFC 2046 §5.1.1). A boundary that looked like an encoded-word
// was decoded before the body was split, found no delimiter line and left
// the whole message unscanned while mail clients showed it.
func TestParamsReadRaw(t *testing.T) {
	raw := "From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/alternative;\n boundary=\"=?utf-8?q?zz?=\"\n\n" +
		"--=?utf-8?q?zz?=\nContent-Type: text/plain\n\ncheap pills\n--=?utf-8?q?zz?=--\n"
	m := Parse([]byte(raw), Limits{})
	if m.Text != "cheap pills" || m.Has(AnomalyUnterminated) {
		t.Errorf("text %q, anomalies %v", m.Text, m.Anomalies)
	}
	// The de facto encoded-word file names (Outlook) still decode.
	raw = "From: a@example.com\nContent-Type: application/octet-stream; name=\"=?utf-8?B?aW52b2ljZS5leGU=?=\"\n\nx"
	if m := Parse([]byte(raw), Limits{}); len(m.Parts) != 1 || m.Parts[0].Filename != "invoice.exe" {
		t.Errorf("encoded-word file name: %+v", m.Parts)
	}
}
