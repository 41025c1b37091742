package sieve

import (
	"context"
	"strings"
	"testing"
)

// TestMailtoHeaderLineBreak: a mailto URI's header fields (RFC 6068) must
// be single-line field bodies; only "body" may hold line breaks. A
// percent-encoded CRLF in a header value ("?X-A=b%0D%0ABcc:%20x") was copied
// into the notification as is, injecting header fields (a Bcc to another
// recipient, a second Content-Type), and valid_notify_method called the URI
// valid where Pigeonhole refuses it. Such a URI is now invalid.
func TestMailtoHeaderLineBreak(t *testing.T) {
	for _, uri := range []string{
		"mailto:a@example.com?X-A=b%0D%0ABcc:%20evil@example.org",
		"mailto:a@example.com?X-A=b%0ABcc:%20evil@example.org",
		"mailto:a@example.com?subject=hi%0D%0ABcc:%20evil@example.org",
		"mailto:%22a%0D%0ABcc:%20x%22%20%3Ca@example.com%3E",
		"mailto:a@example.com?cc=%22b%0Dc%22%20%3Cb@example.com%3E",
		"mailto:a@example.com?X-A=b%00c",
	} {
		if validNotifyMethod(uri) {
			t.Errorf("%s: valid", uri)
		}
		// built at runtime: the notify action fails instead of sending it
		src := `require ["enotify","variables"]; set "u" "` + uri + `"; notify "${u}";`
		res, err := mustCompile(t, src).Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg)), Envelope: Envelope{From: "alice@example.org", To: "bob@example.net"}})
		if err == nil {
			t.Errorf("%s: notify accepted", uri)
			for _, a := range res.Actions {
				for _, o := range NotifyMessages(&Env{Message: NewMessage([]byte(testMsg)), Envelope: Envelope{From: "alice@example.org", To: "bob@example.net"}}, &a, nil) {
					if strings.Contains(string(o.Data), "\nBcc:") {
						t.Errorf("%s: injected a header:\n%s", uri, o.Data)
					}
				}
			}
		}
	}
	// the body may hold line breaks
	if !validNotifyMethod("mailto:a@example.com?body=line1%0D%0Aline2&subject=hi%20there") {
		t.Error("a body with a line break is valid")
	}
}
