// Package dnserr classifies DNS lookup failures the way the mail
// authentication RFCs read them: an authoritative "no such name / no such
// record" is an answer, and every other failure — SERVFAIL, REFUSED, NOTIMP,
// FORMERR, a timeout, an unreachable server — is temporary (RFC 7208 §4.4 for
// SPF, RFC 6376 §6.1.2 for DKIM, RFC 7489 §6.6.3 for DMARC).
//
// Go's resolver marks only SERVFAIL and timeouts temporary, and the SPF and
// DKIM libraries decide temperror versus permerror from net.Error's
// Temporary(): a resolver that refuses queries would otherwise make every
// sender a permerror, which a policy may reject.
package dnserr

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
)

// Classify returns err as a *net.DNSError (the libraries type-assert it, so
// it is never wrapped further): "not found" as it is, every other failure
// with IsTemporary set. nil stays nil.
func Classify(name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if !errors.As(err, &de) {
		return &net.DNSError{Err: err.Error(), Name: name, IsTimeout: errors.Is(err, context.DeadlineExceeded),
			IsTemporary: true, UnwrapErr: err}
	}
	if de.IsNotFound || de.IsTemporary {
		return de
	}
	t := *de
	t.IsTemporary = true
	return &t
}

// FQDN roots a domain name with a trailing dot. The names SPF, DKIM, DMARC
// and DNS lists look up are absolute, but Go's resolver (like libc's) tries an
// unrooted name that fails again under each resolv.conf "search" domain and
// reports the last answer: with "search corp.example", a SERVFAIL for
// _dmarc.bank.example became the NXDOMAIN of _dmarc.bank.example.corp.example
// (no policy instead of a temporary failure: the bank's p=reject lost while its
// DNS was down), and a sender domain without SPF took the record of
// <domain>.corp.example (a wildcard "v=spf1 -all" failed every such sender).
// IP literals are left alone: rooted, they would be looked up as names.
func FQDN(name string) string {
	if name == "" || strings.HasSuffix(name, ".") {
		return name
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return name
	}
	return name + "."
}
