package lmtpd

import (
	"context"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
)

// Filter decides what happens to a message for one recipient. The production
// implementation runs Sieve (sieve.go); tests use fakes.
type Filter interface {
	Filter(ctx context.Context, in *FilterInput) (*Verdict, error)
}

// FilterInput is everything a filter may look at.
type FilterInput struct {
	User      *directory.User
	Home      string
	From      string // envelope sender ("" = null sender)
	To        string // envelope recipient as given in RCPT (with +detail)
	Message   []byte // the message as received (LF line ends)
	Mailboxes func(name string) bool
	// Seen reports whether a duplicate id was recorded for this user; an
	// error (the store did not answer) tempfails the recipient, since "not
	// seen" would change what the script does.
	Seen func(ctx context.Context, id string) (bool, error)
	// AsUser runs fn with the user's filesystem credentials (those the
	// delivery uses), for reading what the user controls — their Sieve
	// scripts — as the user could; nil: with the process's own. fn's error
	// is returned as it is; one of its own wraps maildir.ErrCredentials (fn
	// did not run: a temporary failure), as Mailbox.AsUser's does.
	AsUser func(fn func() error) error
	Now    time.Time
}

// Action kinds a Verdict may carry.
const (
	ActKeep       = "keep"
	ActFileinto   = "fileinto"
	ActRedirect   = "redirect"
	ActReject     = "reject"
	ActDiscard    = "discard"
	ActVacation   = "vacation"
	ActQuarantine = "quarantine"
)

// Action is one decided action (a subset of sieve.Action).
type Action struct {
	Type    string
	Mailbox string
	Flags   []string
	Create  bool
	Copy    bool
	Address string
	Reason  string
	Subject string
	From    string
	Period  time.Duration
	Handle  string
	// Addresses are the user's extra addresses (vacation :addresses).
	Addresses []string
	Mime      bool
	Implicit  bool
}

// Verdict is a filter's decision.
type Verdict struct {
	Actions []Action
	// Errors are script errors; the actions are then what Pigeonhole does on failure
	// (implicit keep), and the caller logs them.
	Errors []error
	// Header, when non-nil, replaces the first HeaderLen bytes of the message
	// (editheader): the header fields the filter parsed, and nothing after them.
	Header    []byte
	HeaderLen int
	// Marks are duplicate ids to record after a successful delivery.
	Marks []Mark
	// Ignored names actions the script asked for that lmtpd does not carry out
	// (notify, report); they are noted in the delivery log line.
	Ignored []string
}

// Mark is a duplicate-tracking id with its period.
type Mark struct {
	ID     string
	Period time.Duration
}

// TempError marks a filter failure that must tempfail the recipient (Pigeonhole's
// SIEVE_EXEC_TEMP_FAILURE) instead of falling back to implicit keep.
type TempError struct{ Err error }

func (e *TempError) Error() string { return "sieve temporary failure: " + e.Err.Error() }
func (e *TempError) Unwrap() error { return e.Err }
