package sieve

import (
	"context"
	"testing"
)

// One encoded-word in a charset the decoder cannot convert, or with an RFC
// 2231 language suffix, must not leave the other words of the field encoded:
// that let a sender slip any subject past header tests.
func TestHeaderDecodeUnknownCharset(t *testing.T) {
	s := mustCompile(t, `if header :contains "subject" "Viagra" { discard; }`)
	for _, subj := range []string{
		"=?x-unknown?Q?cheap?= =?utf-8?Q?Viagra?=",
		"=?utf-8*en?Q?Viagra?=",
		"=?UTF-8*en-US?B?VmlhZ3Jh?= now",
		"=?x-unknown?B?Vmlh?= =?utf-8?Q?gra?=",
	} {
		msg := "From: a@example.org\r\nTo: b@example.net\r\nSubject: " + subj + "\r\n\r\nbody\r\n"
		res, err := s.Execute(context.Background(), &Env{Message: NewMessage([]byte(msg))})
		if err != nil {
			t.Fatal(err)
		}
		if !hasAction(res, "discard") {
			t.Errorf("Subject: %s: header :contains did not see the decoded text; actions %v", subj, actSummary(res))
		}
	}
	if got := decodeHeader("=?x-unknown?Q?caf=E9?= ok"); got != "caf\uFFFD ok" {
		t.Errorf("unknown charset with 8-bit text decoded to %q", got)
	}
}
