package authcheck

import (
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

func TestCRLFReader(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"a\rb\n\r\n", "a\rb\r\n\r\n"},
		{"no newline", "no newline"},
	} {
		for name, r := range map[string]func() io.Reader{
			"whole":    func() io.Reader { return strings.NewReader(tc.in) },
			"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(tc.in)) },
		} {
			got, err := io.ReadAll(iotest.OneByteReader(crlfReader(r())))
			if err != nil || string(got) != tc.want {
				t.Errorf("%s %q: got %q, %v; want %q", name, tc.in, got, err, tc.want)
			}
		}
	}
	// Large input through a small destination buffer.
	big := strings.Repeat("line\n", 100000)
	got, err := io.ReadAll(crlfReader(strings.NewReader(big)))
	if err != nil || string(got) != strings.ReplaceAll(big, "\n", "\r\n") {
		t.Errorf("large input: %d bytes, %v", len(got), err)
	}
}

// go-msgauth stops reading at signatures it rejects early; nothing may be
// left running (and holding the message) afterwards.
func TestDKIMEarlyStopLeaksNothing(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t)
	body := strings.Repeat(strings.Repeat("x", 76)+"\n", 1<<20/77)
	before := runtime.NumGoroutine()
	for _, sig := range []string{
		"v=2; junk",
		"v=1; a=rsa-sha256; d=example.org; s=missing; h=from; bh=AAAA; b=AAAA",
		"v=1; a=ed25519-sha256; d=example.org; s=sel; l=10; h=from; bh=AAAA; b=AAAA",
	} {
		for i := 0; i < 10; i++ {
			raw := "DKIM-Signature: " + sig + "\nFrom: a@example.org\nSubject: x\n\n" + body
			msg := message.Parse([]byte(raw), message.DefaultLimits())
			if res := c.checkDKIM(context.Background(), msg); len(res) != 1 || res[0].Err == nil {
				t.Fatalf("%s: %+v", sig, res)
			}
			msg.Close()
		}
	}
	// A leaked goroutine never ends: the wait only has to outlast the ones
	// that are ending, which a loaded machine (-race, parallel packages)
	// can keep from running for more than a second or two.
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("goroutines %d before, %d after 30 messages", before, n)
	}
}

// A signature with l= is neither valid nor invalid: it scores nothing and
// DMARC falls back to SPF.
func TestDKIMBodyLength(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t)
	signed := f.sign(t, "example.org", rawMsg("news@example.org", "Hello\r\n"))
	withL := strings.Replace(signed, "DKIM-Signature: ", "DKIM-Signature: l=7; ", 1)
	if withL == signed {
		t.Fatal("no DKIM-Signature to edit")
	}
	for _, tc := range []struct {
		name string
		ip   string
		want string
	}{
		{"spf aligned pass", "192.0.2.1", "DKIM_BODY_LENGTH,DMARC_PASS,SPF_PASS"},
		{"spf fail", "203.0.113.5", "DKIM_BODY_LENGTH,DMARC_REJECT,SPF_FAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			syms := check(c, &spam.Input{ClientIP: parseIP(tc.ip), MailFrom: "bounce@example.org", Helo: "mx"}, withL)
			if got := names(syms); got != tc.want {
				t.Fatalf("symbols %s, want %s", got, tc.want)
			}
			for _, s := range syms {
				if s.Name == "DKIM_BODY_LENGTH" && (s.Score != 0 || strings.Join(s.Options, ",") != "header.d=example.org") {
					t.Errorf("%+v", s)
				}
			}
			if ar := AuthResults("mx.test", syms); !strings.Contains(ar, "dkim=policy header.d=example.org") {
				t.Errorf("Authentication-Results %q", ar)
			}
		})
	}
}
