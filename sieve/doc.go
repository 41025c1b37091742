// Package sieve is dovetail's Sieve (RFC 5228) interpreter: lexer, parser,
// compiler to an immutable executable form, and an interpreter producing an
// ordered list of actions with RFC 5228 semantics (implicit keep, action
// conflicts, stop, require checks).
//
// Usage:
//
//	s, err := sieve.Compile("user.sieve", src, &sieve.Options{Includes: loader})
//	// err is a *sieve.CompileError listing every error as name:line:col: msg
//	res, err := s.Execute(ctx, &sieve.Env{
//		Message:  sieve.NewMessage(raw),
//		Envelope: sieve.Envelope{From: "a@example.org", To: "b@example.net"},
//		Config:   map[string]string{"recipient_delimiter": "+"},
//	})
//	for _, a := range res.Actions { ... } // implicit keep is a keep Action with Implicit set
//
// A compiled *Script is safe for concurrent use by many goroutines. The
// package does no I/O: the delivery agent supplies the message, envelope,
// mailbox existence (MailboxChecker), duplicate tracking (DuplicateTracker),
// IMAP METADATA entries (MetadataStore) and include scripts (IncludeLoader). Runtime errors are returned together
// with a Result holding what Pigeonhole would do on failure (the actions of
// the scripts that finished before the failing one, plus an implicit keep).
// An error wrapping ErrTemporary is not the script's: a service the agent
// supplies (the DuplicateTracker) failed, and the agent tempfails the
// message instead of carrying out that result.
//
// editheader changes are visible to the delivery agent through
// Result.HeadersEdited / Result.Headers (the full, edited header list in
// order). RunMulti implements Pigeonhole's sieve_before / user /
// sieve_after sequencing.
//
// Syntax errors are recovered from as Pigeonhole does (one error per
// mistake, parsing goes on); a script with syntax errors is not validated
// further. docs/sieve.md lists the extensions and the conformance figures.
//
// Limits (DefaultLimits) bound script size, tokens, nesting, variables,
// redirects, actions, execution steps and wall time, and regex length and
// compiled size; regular expressions use RE2 (linear time) and a match that
// could not finish within the time left is refused, so a hostile script
// cannot stall delivery.
package sieve
