package authcheck

import (
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// FuzzAuthResults feeds hostile envelope and From values (they reach the
// header through symbol options) and checks the rendered header stays one
// parseable line.
func FuzzAuthResults(f *testing.F) {
	f.Add("bounce@example.org", "From: A <a@example.org>", "mail.example.test")
	f.Add("a;b=c@x", "From: \"x; dkim=pass\" <a@b.example>", "id")
	f.Add("", "From: a@b\r\nX-Injected: 1", "host")
	f.Fuzz(func(t *testing.T, mailFrom, fromLine, id string) {
		if id == "" || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' || strings.ContainsRune(";()\"\\", r) }) {
			return // the authserv-id is ours (config or $myhostname), not input
		}
		msg := message.Parse([]byte(fromLine+"\r\n\r\nbody\r\n"), message.DefaultLimits())
		defer msg.Close()
		syms := []spam.Symbol{{Name: "SPF_PASS", Options: []string{"smtp.mailfrom=" + mailFrom}}}
		if d, err := fromDomain(msg); err == nil {
			syms = append(syms, spam.Symbol{Name: "DMARC_REJECT", Options: []string{"header.from=" + d, "p=reject"}},
				spam.Symbol{Name: "DKIM_VALID", Options: []string{"header.d=" + d}})
		}
		v := AuthResults(id, syms)
		if strings.ContainsAny(v, "\r\n") {
			t.Fatalf("line break in %q", v)
		}
		got, _, err := authres.Parse(v)
		if err != nil {
			return // values go-msgauth cannot quote back are dropped by no one; at least no injection
		}
		if got != id {
			t.Fatalf("authserv-id %q parsed as %q from %q", id, got, v)
		}
	})
}

// FuzzFromDomain: any From header yields a domain without separators or an error.
func FuzzFromDomain(f *testing.F) {
	for _, s := range []string{"a@b.example", "\"x@y\" <a@b.example>", "a@b, c@d", "<>", "=?utf-8?q?x?= <a@b>", "@", "a@b>c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, from string) {
		msg := message.Parse([]byte("From: "+from+"\r\n\r\nx\r\n"), message.DefaultLimits())
		defer msg.Close()
		d, err := fromDomain(msg)
		if err == nil && (d == "" || strings.ContainsAny(d, " \t\r\n<>@,;")) {
			t.Fatalf("From %q gave domain %q", from, d)
		}
	})
}
