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
