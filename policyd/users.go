package policyd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dovetail-mail/dovetail/directory"
)

// recipientCheck rejects unknown and disabled recipients of local domains at RCPT,
// before the message is accepted (no backscatter).
type recipientCheck struct {
	dir      directory.Lookup
	domains  map[string]bool
	delim    string
	unknown  Action
	disabled Action
}

func newRecipientCheck(c RecipientsConfig, dir directory.Lookup) (*recipientCheck, error) {
	if dir == nil {
		return nil, errors.New("recipients check needs a directory")
	}
	r := &recipientCheck{dir: dir, domains: map[string]bool{}, delim: c.RecipientDelimiter,
		unknown: mustAction(c.UnknownAction), disabled: mustAction(c.DisabledAction)}
	for _, d := range c.LocalDomains {
		r.domains[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	return r, nil
}

func (r *recipientCheck) name() string { return CheckRecipients }

func (r *recipientCheck) eval(ctx context.Context, tx *txn) (verdict, error) {
	req := tx.req
	addr := canonicalAddr(req.Recipient)
	if req.ProtocolState != StateRcpt || addr == "" || !r.domains[domainOf(addr)] {
		return pass, nil
	}
	// The address as written first, then without its +detail, as Postfix's
	// table lookups: an alias that really contains the delimiter ("sales+eu@")
	// exists as written.
	u, err := r.dir.LookupAddress(ctx, addr)
	if base := stripDetail(addr, r.delim); base != addr && errors.Is(err, directory.ErrNotFound) {
		addr = base
		u, err = r.dir.LookupAddress(ctx, addr)
	}
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return verdict{action: expand(r.unknown, "{recipient}", req.Recipient), reason: "unknown recipient " + addr}, nil
	case errors.Is(err, directory.ErrDisabled):
		return verdict{action: expand(r.disabled, "{recipient}", req.Recipient), reason: "disabled recipient " + addr}, nil
	case err != nil:
		return verdict{}, fmt.Errorf("recipient lookup %s: %w", addr, err)
	case !u.Enabled:
		return verdict{action: expand(r.disabled, "{recipient}", req.Recipient), reason: "disabled recipient " + addr}, nil
	}
	return pass, nil
}

// senderLoginCheck lets an authenticated user send only as one of the addresses
// the directory lists for their login.
type senderLoginCheck struct {
	dir      directory.Lookup
	delim    string
	mismatch Action
}

func newSenderLoginCheck(c SenderLoginConfig, dir directory.Lookup) (*senderLoginCheck, error) {
	if dir == nil {
		return nil, errors.New("sender_login check needs a directory")
	}
	return &senderLoginCheck{dir: dir, delim: c.RecipientDelimiter, mismatch: mustAction(c.MismatchAction)}, nil
}

func (s *senderLoginCheck) name() string { return CheckSenderLogin }

func (s *senderLoginCheck) eval(ctx context.Context, tx *txn) (verdict, error) {
	req := tx.req
	// The null sender (bounces) carries no identity to spoof.
	if req.SASLUsername == "" || req.Sender == "" {
		return pass, nil
	}
	if req.ProtocolState != StateMail && req.ProtocolState != StateRcpt {
		return pass, nil
	}
	sender := canonicalAddr(req.Sender)
	u, err := s.dir.LookupLogin(ctx, req.SASLUsername)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		// Authenticated by some other means but unknown here: owns nothing.
		return s.reject(req, "login "+req.SASLUsername+" not in the directory"), nil
	case errors.Is(err, directory.ErrDisabled), err == nil && !u.Enabled:
		// Lookups return a disabled user with Enabled=false: an account
		// disabled while its SMTP session stays open owns nothing either.
		return s.reject(req, "login "+req.SASLUsername+" disabled"), nil
	case err != nil:
		return verdict{}, fmt.Errorf("login lookup %s: %w", req.SASLUsername, err)
	}
	owns := func(addr string) bool {
		return slices.ContainsFunc(u.Addresses, func(a string) bool { return strings.EqualFold(a, addr) })
	}
	if owns(sender) {
		return pass, nil
	}
	// "user+tag@" for an owned "user@" — but, as Postfix's
	// reject_sender_login_mismatch looks the full address up first, not when
	// the full address is somebody else's; and the owned addresses are never
	// stripped themselves (owning "team+support@" is not owning "team@").
	if base := stripDetail(sender, s.delim); base != sender && owns(base) {
		other, err := s.dir.LookupAddress(ctx, sender)
		switch {
		case errors.Is(err, directory.ErrNotFound), errors.Is(err, directory.ErrDisabled):
			return pass, nil
		case err != nil:
			return verdict{}, fmt.Errorf("sender lookup %s: %w", sender, err)
		case strings.EqualFold(other.Login, u.Login):
			return pass, nil
		}
		return s.reject(req, "sender "+sender+" belongs to "+other.Login+", not to login "+req.SASLUsername), nil
	}
	return s.reject(req, "sender "+sender+" not owned by login "+req.SASLUsername), nil
}

func (s *senderLoginCheck) reject(req *Request, reason string) verdict {
	return verdict{action: expand(s.mismatch, "{login}", req.SASLUsername, "{sender}", req.Sender), reason: reason}
}

// canonicalAddr is addr as Postfix resolves it before its table lookups
// (trivial-rewrite's resolve, which smtpd's recipient and sender/login
// checks use): lower case, and without the dot that may end the domain.
// Postfix accepts "user@example.com." as user@example.com of a local domain
// and delivers (or bounces) it as such, so the checks must see the same
// address. A dot after a dot or the '@' stays: those addresses are bogus.
func canonicalAddr(addr string) string {
	addr = strings.ToLower(addr)
	if n := len(addr); n >= 2 && addr[n-1] == '.' && addr[n-2] != '.' && addr[n-2] != '@' && strings.IndexByte(addr, '@') >= 0 {
		addr = addr[:n-1]
	}
	return addr
}

// stripDetail turns "user+tag@domain" into "user@domain" for any of the
// delimiter characters (Postfix's recipient_delimiter may list several).
func stripDetail(addr, delims string) string {
	if delims == "" {
		return addr
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		at = len(addr)
	}
	if i := strings.IndexAny(addr[:at], delims); i > 0 {
		return addr[:i] + addr[at:]
	}
	return addr
}
