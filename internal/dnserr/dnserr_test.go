package dnserr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestClassify(t *testing.T) {
	notFound := &net.DNSError{Err: "no such host", Name: "x.example", IsNotFound: true}
	servfail := &net.DNSError{Err: "server misbehaving", Name: "x.example", IsTemporary: true}
	refused := &net.DNSError{Err: "server misbehaving", Name: "x.example"} // REFUSED, NOTIMP, FORMERR in Go
	for _, tc := range []struct {
		name      string
		err       error
		notFound  bool
		temporary bool
		timeout   bool
	}{
		{"not found", notFound, true, false, false},
		{"wrapped not found", fmt.Errorf("lookup: %w", notFound), true, false, false},
		{"servfail", servfail, false, true, false},
		{"refused", refused, false, true, false},
		{"deadline", context.DeadlineExceeded, false, true, true},
		{"other", errors.New("connection refused"), false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify("x.example", tc.err)
			de, ok := got.(*net.DNSError)
			if !ok {
				t.Fatalf("Classify = %T, want *net.DNSError", got)
			}
			if de.IsNotFound != tc.notFound || de.Temporary() != tc.temporary || de.Timeout() != tc.timeout {
				t.Errorf("Classify(%v) = notFound %v temporary %v timeout %v, want %v %v %v",
					tc.err, de.IsNotFound, de.Temporary(), de.Timeout(), tc.notFound, tc.temporary, tc.timeout)
			}
		})
	}
	if Classify("x", nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	if refused.IsTemporary {
		t.Error("Classify changed the caller's error")
	}
}

func TestFQDN(t *testing.T) {
	for in, want := range map[string]string{
		"example.org":    "example.org.",
		"example.org.":   "example.org.",
		"192.0.2.1":      "192.0.2.1",
		"2001:db8::1":    "2001:db8::1",
		"_dmarc.example": "_dmarc.example.",
		"":               "",
	} {
		if got := FQDN(in); got != want {
			t.Errorf("FQDN(%q) = %q, want %q", in, got, want)
		}
	}
}
