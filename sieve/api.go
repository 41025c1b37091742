package sieve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Options control compilation.
type Options struct {
	// Limits bound resource use; zero fields take the DefaultLimits value.
	Limits Limits
	// Extensions restricts the extensions a script may require; nil means all
	// supported extensions.
	Extensions []string
	// Includes resolves include :personal / :global script names. When nil,
	// include always fails to find the script.
	Includes IncludeLoader
	// testsuite enables vnd.dovecot.testsuite (conformance runner only).
	testsuite *suiteRunner
}

// Limits bounds what a (possibly hostile) script can consume.
type Limits struct {
	MaxScriptSize   int           // bytes of source (default 1 MiB)
	MaxTokens       int           // lexer tokens (default 200000)
	MaxNesting      int           // block nesting and test nesting depth, each (default 32)
	MaxVariables    int           // distinct variables per scope (default 255)
	MaxVariableSize int           // bytes per variable value (default 4096)
	MaxMatchValues  int           // ${1}..${N} (default 32)
	MaxRedirects    int           // redirect actions per execution (default 4)
	MaxActions      int           // actions per execution (default 32)
	MaxSteps        int           // interpreted commands+tests per execution (default 1e6)
	MaxCPUTime      time.Duration // wall time per execution (default 2s)
	MaxRegexLen     int           // bytes of a regex pattern (default 4096)
	MaxRegexSize    int           // estimated compiled instructions of one regex (default 16384)
	MaxRegexTotal   int           // the same for all constant regexes of a script and its includes (default 65536)
	MaxIncludeDepth int           // nested includes (default 10)
	MaxIncludes     int           // total included scripts (default 255)
	MaxHeaderSize   int           // editheader: max size of an added header field (default 2048)
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxScriptSize:   1 << 20,
		MaxTokens:       200000,
		MaxNesting:      32,
		MaxVariables:    255,
		MaxVariableSize: 4096,
		MaxMatchValues:  32,
		MaxRedirects:    4,
		MaxActions:      32,
		MaxSteps:        1000000,
		MaxCPUTime:      2 * time.Second,
		MaxRegexLen:     4096,
		MaxRegexSize:    16384,
		MaxRegexTotal:   65536,
		MaxIncludeDepth: 10,
		MaxIncludes:     255,
		MaxHeaderSize:   2048,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxScriptSize <= 0 {
		l.MaxScriptSize = d.MaxScriptSize
	}
	if l.MaxTokens <= 0 {
		l.MaxTokens = d.MaxTokens
	}
	if l.MaxNesting <= 0 {
		l.MaxNesting = d.MaxNesting
	}
	if l.MaxVariables <= 0 {
		l.MaxVariables = d.MaxVariables
	}
	if l.MaxVariableSize <= 0 {
		l.MaxVariableSize = d.MaxVariableSize
	}
	if l.MaxMatchValues <= 0 {
		l.MaxMatchValues = d.MaxMatchValues
	}
	if l.MaxRedirects <= 0 {
		l.MaxRedirects = d.MaxRedirects
	}
	if l.MaxActions <= 0 {
		l.MaxActions = d.MaxActions
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = d.MaxSteps
	}
	if l.MaxCPUTime <= 0 {
		l.MaxCPUTime = d.MaxCPUTime
	}
	if l.MaxRegexLen <= 0 {
		l.MaxRegexLen = d.MaxRegexLen
	}
	if l.MaxRegexSize <= 0 {
		l.MaxRegexSize = d.MaxRegexSize
	}
	if l.MaxRegexTotal <= 0 {
		l.MaxRegexTotal = d.MaxRegexTotal
	}
	if l.MaxIncludeDepth <= 0 {
		l.MaxIncludeDepth = d.MaxIncludeDepth
	}
	if l.MaxHeaderSize <= 0 {
		l.MaxHeaderSize = d.MaxHeaderSize
	}
	if l.MaxIncludes <= 0 {
		l.MaxIncludes = d.MaxIncludes
	}
	return l
}

// IncludeLocation is where an included script lives (RFC 6609).
type IncludeLocation int

const (
	Personal IncludeLocation = iota
	Global
)

// IncludeLoader loads scripts named by include. It returns ErrScriptNotFound
// (possibly wrapped) when the script does not exist.
type IncludeLoader interface {
	LoadScript(loc IncludeLocation, name string) ([]byte, error)
}

// ErrScriptNotFound is returned by IncludeLoaders for missing scripts.
var ErrScriptNotFound = fmt.Errorf("sieve: script not found")

// CompileError lists every error found while compiling a script.
type CompileError struct {
	Errors []*PosError
}

// PosError is one positioned diagnostic.
type PosError struct {
	Script    string
	Line, Col int
	Msg       string
}

func (e *PosError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.Script, e.Line, e.Col, e.Msg)
}

func (e *CompileError) Error() string {
	var b strings.Builder
	for i, pe := range e.Errors {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(pe.Error())
	}
	return b.String()
}

// Envelope is the SMTP envelope of the message being delivered.
type Envelope struct {
	From   string // MAIL FROM (without <>; empty for the null sender)
	To     string // RCPT TO (the final recipient)
	OrigTo string // ORCPT / original recipient, if known
	Auth   string // authenticated sender user, if any
}

// MailboxChecker answers mailboxexists (RFC 5490) and special-use queries.
type MailboxChecker interface {
	MailboxExists(name string) bool
}

// SpecialUseChecker optionally extends MailboxChecker for special-use.
type SpecialUseChecker interface {
	SpecialUseExists(mailbox string, flags []string) bool
}

// DuplicateTracker backs the duplicate extension (RFC 7352).
// Check reports whether id was seen within its period: (false, nil) when it
// was not (the backing store has no such id), an error when it could not
// tell. An error aborts the run with ErrTemporary, because "not seen" would
// change what the script does (`if duplicate { discard; }` would deliver a
// second copy). The delivery agent records ids itself, only after a
// successful delivery (Result.DuplicateMarks).
type DuplicateTracker interface {
	Check(ctx context.Context, id string) (bool, error)
}

// ErrTemporary marks a run that failed because a service backing it (the
// DuplicateTracker) failed, not because of the script: test for it with
// errors.Is. The Result must then not be carried out; the delivery agent
// answers with a temporary failure so that the message is retried, as
// Pigeonhole does for SIEVE_EXEC_TEMP_FAILURE. A script's own runtime error
// (*RuntimeError) is not temporary: its Result (the implicit keep) is what
// Pigeonhole delivers.
var ErrTemporary = errors.New("sieve: temporary failure")

// DuplicateMark is an id the delivery agent should record after delivery.
type DuplicateMark struct {
	ID     string
	Period time.Duration
}

// Env is the per-message execution environment.
type Env struct {
	Message  *Message
	Envelope Envelope
	// Now returns the current time (date/currentdate, vacation). nil = time.Now.
	Now func() time.Time
	// Mailboxes answers mailboxexists; nil means "every mailbox exists".
	Mailboxes MailboxChecker
	// Duplicates backs the duplicate test; nil means "never seen".
	Duplicates DuplicateTracker
	// Metadata backs mboxmetadata/servermetadata; nil means no entry is set.
	Metadata MetadataStore
	// Environment holds the environment extension items (RFC 5183), e.g.
	// "domain", "host", "name", "version", "phase", "remote-host",
	// "remote-ip". "location" defaults to "MDA".
	Environment map[string]string
	// Config holds Pigeonhole-style settings, e.g. recipient_delimiter,
	// sieve_spamtest_status_header, sieve_spamtest_status_type,
	// sieve_spamtest_max_value, sieve_spamtest_max_header,
	// sieve_spamtest_text_value1..10, sieve_virustest_*, sieve_vacation_*,
	// sieve_editheader_protected, sieve_editheader_max_header_size.
	Config map[string]string
}

// Action is one entry of the execution result.
type Action struct {
	// Type is keep|fileinto|redirect|reject|ereject|discard|vacation|notify|quarantine|addheader|deleteheader.
	Type    string
	Mailbox string   // fileinto/keep (keep: "" means INBOX)
	Flags   []string // imap4flags for keep/fileinto
	Copy    bool     // :copy
	Create  bool     // :create
	// SpecialUse is fileinto :specialuse.
	SpecialUse string
	Address    string // redirect target; vacation/notify recipient
	Reason     string // reject/ereject/vacation/quarantine text
	Subject    string // vacation subject
	From       string // vacation/notify :from
	Seconds    int64  // vacation period in seconds (days*86400 for :days)
	Handle     string // vacation :handle (computed when absent)
	Addresses  []string
	Mime       bool   // vacation :mime
	Method     string // notify method URI
	Importance string // notify :importance
	Options    []string
	Message    string // notify :message
	Implicit   bool   // implicit keep
	// ID and LegacyNotify describe a notify action of the deprecated draft
	// notify extension (its :id, for denotify).
	ID           string
	LegacyNotify bool
	// HeadersOnly is report :headers_only (vnd.dovecot.report; the action's
	// Method is the feedback type, Message the text, Address the recipient).
	HeadersOnly bool
	// Headers is the edited header list (editheader) as it was when the
	// action was taken; nil means the message is delivered unchanged.
	Headers []Header
}

// Result is what one execution (or a multiscript run) decided.
type Result struct {
	Actions      []Action // ordered; includes the implicit keep when it applies
	ImplicitKeep bool
	// HeadersEdited is true when editheader changed the header; Headers is
	// then the edited header list to deliver (in order).
	HeadersEdited bool
	Headers       []Header
	// DuplicateMarks lists duplicate ids to record after delivery.
	DuplicateMarks []DuplicateMark
	// Errors are runtime errors; when non-empty, Actions hold the actions
	// Pigeonhole would perform on failure (implicit keep).
	Errors []error
	// Warnings are non-fatal runtime problems (e.g. an invalid regex built
	// from variables), which Pigeonhole logs.
	Warnings []string
}

// Compile compiles a script. The returned Script is immutable and safe for
// concurrent use. Errors are reported as *CompileError.
func Compile(name string, src []byte, opts *Options) (*Script, error) {
	return compile(name, src, opts)
}

// Execute runs the script for one message.
func (s *Script) Execute(ctx context.Context, env *Env) (*Result, error) {
	return RunMulti(ctx, env, nil, s, nil)
}

// RunMulti runs sieve_before scripts, the user script (may be nil) and
// sieve_after scripts with Pigeonhole's semantics: scripts run in sequence,
// sharing one result; the chain stops after a script that cancels the
// implicit keep (the next script only runs while the message would still be
// kept); the implicit keep is evaluated once at the end.
//
// A runtime error stops the chain and is returned with the failure result
// (also in Result.Errors). When it wraps ErrTemporary the result is only
// informative: the caller must tempfail rather than deliver it.
func RunMulti(ctx context.Context, env *Env, before []*Script, user *Script, after []*Script) (*Result, error) {
	return runMulti(ctx, env, before, user, after)
}
