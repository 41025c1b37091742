// Package spam is dovetail's protocol-neutral spam scoring engine: a message and
// its SMTP envelope go in (Input), a Verdict comes out (score, action, symbols).
//
// The engine runs SpamAssassin-syntax rules (package spam/rules, with our own
// embedded default ruleset), a Robinson/Fisher chi-square Bayes classifier
// (spam/bayes) on a store.Store, allow/deny lists, and external Checks (SPF/DKIM/
// DMARC in spam/authcheck, DNSBL/URIBL in dnsbl) concurrently, each within the
// scan budget. The milter, the `dovetail score` CLI and later a controller API all
// call Engine.Score.
package spam

import (
	"context"
	"io"
	"net"

	"github.com/dovetail-mail/dovetail/spam/message"
)

// Message is a parsed message (MIME tree, decoded text, URIs, anomalies). Build
// one with Engine.NewBuilder (streaming, spills to disk past a threshold) or
// message.Parse; Close it to remove any spill file.
type Message = message.Message

// Input is one message and its SMTP context. Either Message (already parsed, e.g.
// by the milter's Builder) or Raw (read through a Builder with the engine's
// limits) must be set. Envelope fields are optional: the CLI has none.
type Input struct {
	Message *Message  // parsed message; takes precedence over Raw
	Raw     io.Reader // raw RFC 5322 message, used when Message is nil

	ClientIP   net.IP // connecting client (nil when unknown)
	ClientHost string // verified reverse name of ClientIP ("unknown" or "" if none)
	Helo       string
	MailFrom   string   // envelope sender without <>; "" for the null sender
	Rcpts      []string // envelope recipients without <>
	AuthUser   string   // SASL login name when the client authenticated
	QueueID    string   // MTA queue id, for logs

	// User selects the per-user Bayes table ("" = the global one only).
	User string
	// Domain selects per-recipient-domain action thresholds (Config.Domains); when
	// empty the domain of the first recipient is used.
	Domain string
}

// Symbol is one finding: a rule hit, a Bayes class, an authentication result.
type Symbol struct {
	Name        string   `json:"name"`
	Score       float64  `json:"score"`
	Description string   `json:"description,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Check is an external test run concurrently with the rules (authcheck, dnsbl).
// It gets a context carrying the scan budget. A returned error or a panic is
// logged and reported as the symbol "<NAME>_ERROR" with score 0 — never fatal to
// the scan. Checks must not modify msg.
type Check interface {
	Name() string
	Check(ctx context.Context, in *Input, msg *Message) ([]Symbol, error)
}

// CheckFunc adapts a function to Check.
type CheckFunc struct {
	ID string
	Fn func(ctx context.Context, in *Input, msg *Message) ([]Symbol, error)
}

// Name implements Check.
func (c CheckFunc) Name() string { return c.ID }

// Check implements Check.
func (c CheckFunc) Check(ctx context.Context, in *Input, msg *Message) ([]Symbol, error) {
	return c.Fn(ctx, in, msg)
}

// Action is what the MTA should do with the message; the names are rspamd's.
type Action string

// Actions from least to most severe.
const (
	NoAction       Action = "no action"
	AddHeader      Action = "add header"
	RewriteSubject Action = "rewrite subject"
	Greylist       Action = "greylist" // temporary failure (451 4.7.1)
	Reject         Action = "reject"   // 550 5.7.1
)

// severity orders actions: the most severe applicable one wins.
func (a Action) severity() int {
	switch a {
	case AddHeader:
		return 1
	case RewriteSubject:
		return 2
	case Greylist:
		return 3
	case Reject:
		return 4
	}
	return 0
}

// BayesResult is the classifier's view of the message.
type BayesResult struct {
	// Probability of spam in [0,1]; -1 when Bayes did not run (disabled, too
	// little training, store down).
	Probability float64 `json:"probability"`
	Tokens      int     `json:"tokens"`          // tokens used in the decision
	Table       string  `json:"table,omitempty"` // "global" or "user:<name>"
	Skipped     string  `json:"skipped,omitempty"`
}

// Verdict is the result of a scan.
type Verdict struct {
	Score    float64     `json:"score"`    // sum of symbol scores
	Required float64     `json:"required"` // the add-header ("is spam") threshold in effect
	Action   Action      `json:"action"`
	IsSpam   bool        `json:"is_spam"` // Score >= Required (X-Spam-Flag: YES)
	Symbols  []Symbol    `json:"symbols"` // sorted by name
	Bayes    BayesResult `json:"bayes"`
	// Autolearn is SpamAssassin's autolearn= value: ham, spam, no, disabled,
	// failed, unavailable.
	Autolearn string `json:"autolearn"`
	// Subject is the rewritten Subject when Action is RewriteSubject.
	Subject string `json:"subject,omitempty"`
	// Reason explains allow/deny-list and forced decisions ("" otherwise).
	Reason string `json:"reason,omitempty"`
}

// Header is one header field to add.
type Header struct {
	Name  string
	Value string // already folded with CRLF+TAB where long
}
