package sieve

import (
	"context"
	"strings"
	"testing"
)

// TestAddheaderEncodesNonASCII: RFC 5293 section 4 requires a value that is
// not a valid RFC 5322 field body to be encoded (RFC 2047) or refused;
// Pigeonhole encodes it. The raw UTF-8 used to reach the mailbox (and
// redirected copies) as an 8-bit header field. Tests still see the decoded
// value, and only the words that need it are encoded, so an address in a
// structured field stays readable.
func TestAddheaderEncodesNonASCII(t *testing.T) {
	res := execute(t, `require ["editheader","variables"];
addheader "X-Note" "Grüße aus Köln";
addheader :last "Reply-To" "Jürgen Müller <j@example.de>";
if not header :is "x-note" "Grüße aus Köln" { discard; }
if not address :is "reply-to" "j@example.de" { discard; }
if not header :is "reply-to" "Jürgen Müller <j@example.de>" { discard; }`)
	if got := actSummary(res); len(got) != 1 || got[0] != "keep:INBOX*" {
		t.Fatalf("actions %q (a test did not see the decoded value)", got)
	}
	var note, reply string
	for _, h := range res.Headers {
		switch h.Name {
		case "X-Note":
			note = h.Value
		case "Reply-To":
			reply = h.Value
		}
	}
	for _, v := range []string{note, reply} {
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				t.Fatalf("8-bit header value %q", v)
			}
		}
	}
	if !strings.HasPrefix(note, "=?utf-8?q?") {
		t.Errorf("X-Note not RFC 2047-encoded: %q", note)
	}
	if !strings.HasSuffix(reply, " <j@example.de>") {
		t.Errorf("Reply-To address encoded too: %q", reply)
	}
}

// TestAddheaderEncodedLongValue: a long 8-bit value becomes several
// encoded-words on folded lines that decode back to the value.
func TestAddheaderEncodedLongValue(t *testing.T) {
	long := strings.Repeat("Grüße ", 60)
	res := execute(t, `require ["editheader"]; addheader "X-Long" "`+long+`"; if not header :is "x-long" "`+strings.TrimSpace(long)+`" { discard; }`)
	if got := actSummary(res); len(got) != 1 || got[0] != "keep:INBOX*" {
		t.Fatalf("actions %q", got)
	}
	v := res.Headers[0].Value
	for _, line := range strings.Split(v, "\r\n") {
		if len(line) > 78 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
}

type mapLoader map[string]string

func (m mapLoader) LoadScript(loc IncludeLocation, name string) ([]byte, error) {
	if s, ok := m[name]; ok {
		return []byte(s), nil
	}
	return nil, ErrScriptNotFound
}

// TestAddheaderTotalBounded: each added field was bounded, their number only
// by the step limit and the CPU time, so one delivery could grow the header
// by hundreds of megabytes (a script including a list of addheaders again
// and again) and lmtpd then render and store it. What addheader adds in one
// execution is capped; past the cap the script fails (implicit keep of the
// unchanged message).
func TestAddheaderTotalBounded(t *testing.T) {
	inc := `require ["editheader","variables","include"]; global "v";` + strings.Repeat(`addheader :last "X-Pad" "${v}";`, 2000)
	src := `require ["editheader","variables","include"]; global "v"; set "v" "` + strings.Repeat("a", 2000) + `";` + strings.Repeat(`include "pad";`, 50)
	s, err := Compile("user", []byte(src), &Options{Includes: mapLoader{"pad": inc}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg))})
	if err == nil || !strings.Contains(err.Error(), "addheader") {
		t.Fatalf("err = %v, want the addheader limit", err)
	}
	total := 0
	for _, h := range res.Headers {
		total += len(h.Name) + len(h.Value) + 4
	}
	if total > 2*maxAddedHeaderBytes {
		t.Errorf("header grew to %d bytes", total)
	}
	if got := actSummary(res); len(got) != 1 || got[0] != "keep:INBOX*" {
		t.Errorf("actions %q", got)
	}
}

// TestSizeAfterEditheaderDoesNotCopy: after an editheader change the size
// test rendered the whole message (header and body, twice over) to measure
// it, so every size test of a script cost a copy of a message of tens of
// megabytes: a loop of them allocated gigabytes within the CPU limit. The
// size is now added up from the fields and the body.
func TestSizeAfterEditheaderDoesNotCopy(t *testing.T) {
	raw := []byte(testMsg + strings.Repeat("x", 4<<20))
	src := `require ["editheader"]; addheader "X-Tag" "yes";` + strings.Repeat(`if size :over 100M { discard; }`, 50) +
		`if size :over 4M { if size :under 5M { keep; } }`
	s := mustCompile(t, src)
	var res *Result
	var err error
	n := allocated(func() {
		res, err = s.Execute(context.Background(), &Env{Message: NewMessage(raw)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := actSummary(res); len(got) != 1 || got[0] != "keep:INBOX" {
		t.Fatalf("actions %q", got)
	}
	if n > 2<<20 {
		t.Errorf("52 size tests allocated %d MiB", n>>20)
	}
	// the size is the edited message's: header fields, CRLFs and body
	s = mustCompile(t, `require ["editheader"]; addheader "X-Tag" "yes";`+
		`if size :over `+itoa(len(raw)+len("X-Tag: yes\r\n")-1)+` { if size :under `+itoa(len(raw)+len("X-Tag: yes\r\n")+1)+` { discard; } }`)
	res, err = s.Execute(context.Background(), &Env{Message: NewMessage(raw)})
	if err != nil {
		t.Fatal(err)
	}
	if got := actSummary(res); len(got) != 1 || got[0] != "discard" {
		t.Errorf("edited size: actions %q", got)
	}
}
