package sieve

import (
	"context"
	"strings"
	"testing"
)

// nestedRFC822 builds depth message/rfc822 parts, each inside the one before.
func nestedRFC822(depth int) []byte {
	var b strings.Builder
	b.WriteString("From: a@example.org\r\nSubject: outer\r\n")
	for i := 0; i < depth; i++ {
		b.WriteString("Content-Type: message/rfc822\r\n\r\nSubject: level\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nfrop\r\n")
	return []byte(b.String())
}

// TestBodyContentRFC822PastDepthLimit: a message/rfc822 part past the MIME
// nesting limit has no parsed child; body :content "message/rfc822" used to
// index that missing child, so a sender could turn any such script into a
// runtime error (and the script's filing into an implicit keep).
func TestBodyContentRFC822PastDepthLimit(t *testing.T) {
	s := mustCompile(t, `require ["body","fileinto"]; if body :content "message/rfc822" :contains "zz" { discard; } fileinto "Checked";`)
	res, err := s.Execute(context.Background(), &Env{Message: NewMessage(nestedRFC822(maxMimeDepth + 2))})
	if err != nil {
		t.Fatalf("runtime error: %v", err)
	}
	if got := actSummary(res); len(got) != 1 || got[0] != "fileinto:Checked" {
		t.Errorf("actions %q", got)
	}
}
