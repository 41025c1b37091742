package lmtpd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/lmtpd/maildir"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/emersion/go-smtp"
)

// Errors of the delivery pipeline, classified by replyFor.
var (
	// ErrRejected: a Sieve reject/ereject; the RejectError carries the reason.
	ErrRejected = errors.New("lmtpd: rejected by sieve")
	// ErrEmptyRecipient: RCPT TO:<>.
	ErrEmptyRecipient = errors.New("lmtpd: empty recipient")
	// ErrBadAddress: the recipient is not an address.
	ErrBadAddress = errors.New("lmtpd: malformed address")
	// ErrTemporary: anything that should make Postfix retry.
	ErrTemporary = errors.New("lmtpd: temporary failure")
)

// RejectError is a Sieve reject with its reason.
type RejectError struct{ Reason string }

func (e *RejectError) Error() string { return "rejected by sieve: " + e.Reason }
func (e *RejectError) Unwrap() error { return ErrRejected }

// replyFor is THE conversion boundary: every error handed to go-smtp goes through
// it, because go-smtp turns anything that is not an *smtp.SMTPError into a
// permanent "554 5.0.0 Error: transaction failed: <internal text>". Codes follow
// Dovecot LMTP (protocols.md §4.1); anything unknown is temporary, never permanent.
func (d *Deliverer) replyFor(rcpt string, err error) *smtp.SMTPError {
	return replyFor(rcpt, err, d.Config.QuotaFullTempfail)
}

func replyFor(rcpt string, err error, quotaTempfail bool) *smtp.SMTPError {
	mk := func(code int, a, b, c int, msg string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{a, b, c}, Message: msg}
	}
	var se *smtp.SMTPError
	var re *RejectError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		// go-smtp's own (ErrDataTooLarge …) or one we built deliberately. Copy, so
		// callers may not mutate go-smtp's package-level values.
		c := *se
		return &c
	case errors.Is(err, smtp.ErrTooLongLine):
		return mk(552, 5, 6, 0, "Message has a line longer than the limit")
	case errors.Is(err, ErrEmptyRecipient):
		return mk(550, 5, 1, 1, "Unacceptable TO: Empty path not allowed")
	case errors.Is(err, ErrBadAddress):
		return mk(501, 5, 1, 3, "Invalid recipient address")
	case errors.Is(err, directory.ErrNotFound):
		return mk(550, 5, 1, 1, "User doesn't exist: "+printable(rcpt))
	case errors.Is(err, directory.ErrDisabled):
		return mk(550, 5, 2, 1, "Mailbox disabled: "+printable(rcpt))
	case errors.As(err, &re):
		return mk(550, 5, 7, 1, printable(re.Reason))
	case errors.Is(err, maildir.ErrQuota):
		if quotaTempfail {
			return mk(452, 4, 2, 2, "Quota exceeded (mailbox for user is full)")
		}
		return mk(552, 5, 2, 2, "Quota exceeded (mailbox for user is full)")
	case errors.Is(err, maildir.ErrNoSpace):
		return mk(452, 4, 3, 1, "Insufficient system storage")
	case errors.Is(err, directory.ErrUnavailable), errors.Is(err, store.ErrUnavailable):
		return mk(451, 4, 3, 0, "Temporary internal error (directory or store unavailable)")
	default:
		return mk(451, 4, 3, 0, "Temporary internal error")
	}
}

// printable keeps reply text on one line of printable ASCII with a bounded length.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 200 {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r > 0x7e {
			r = ' '
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

func wrapTemp(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTemporary, fmt.Sprintf(format, args...))
}

// IsPermanent reports whether err would be answered with a 5xx reply.
func IsPermanent(err error) bool {
	r := replyFor("", err, false)
	return r != nil && r.Code >= 500
}
