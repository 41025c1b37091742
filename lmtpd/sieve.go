package lmtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dovetail-mail/dovetail/lmtpd/maildir"
	"github.com/dovetail-mail/dovetail/sieve"
)

// SieveFilter runs the Pigeonhole-style script sequence: global before scripts,
// the user's active script (~/.dovecot.sieve, usually a symlink into ~/sieve), global
// after scripts. Scripts are compiled once and cached until the file's mtime or size
// changes.
type SieveFilter struct {
	cfg      SieveConfig
	settings map[string]string
	log      *slog.Logger
	// open opens a script file: openScript (tests: failing opens).
	open func(string) (*os.File, error)

	mu    sync.Mutex
	cache map[string]*cached // by resolved path
}

type cached struct {
	stamp  fileStamp
	deps   []dep // scripts pulled in by include (and ones it looked for)
	script *sieve.Script
	err    error
}

// dep is a file a compile consulted, with whose credentials it was looked at:
// a :personal include is the user's file, a :global one the admin's.
type dep struct {
	fileStamp
	global bool
}

// asFunc runs fn with the filesystem credentials a script's files are read
// with (FilterInput.AsUser for the user's scripts); nil runs it with the
// daemon's own (the global scripts, which are the admin's). fn's error is
// returned as it is; one of its own wraps maildir.ErrCredentials (fn did not
// run), which transientFSError takes for a temporary failure.
type asFunc func(fn func() error) error

func (as asFunc) do(fn func() error) error {
	if as == nil {
		return fn()
	}
	return as(fn)
}

// statAs is os.Stat with as's credentials.
func statAs(as asFunc, path string) (st os.FileInfo, err error) {
	err = as.do(func() (err error) { st, err = os.Stat(path); return err })
	return st, err
}

// fileStamp identifies one version of a file: a ManageSieve SETACTIVE (the link
// now points at another script) or an editor's save changes it even when the size
// and mtime happen to match (inode and ctime differ).
type fileStamp struct {
	path     string
	exists   bool
	mtime    time.Time
	size     int64
	dev, ino uint64
	ctime    int64 // ns; no one can set it back
}

func stampOf(path string, st os.FileInfo) fileStamp {
	fs := fileStamp{path: path, exists: true, mtime: st.ModTime(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		fs.dev, fs.ino = uint64(sys.Dev), sys.Ino
		fs.ctime = sys.Ctim.Nano()
	}
	return fs
}

func stamp(path string) fileStamp {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{path: path}
	}
	return stampOf(path, st)
}

// fresh reports whether the cached compile still matches the files on disk,
// looking at the personal ones with as's credentials (all in one switch).
func (c *cached) fresh(st fileStamp, as asFunc) bool {
	if c.stamp != st {
		return false
	}
	same := func(global bool) bool {
		for _, d := range c.deps {
			if d.global == global && stamp(d.path) != d.fileStamp {
				return false
			}
		}
		return true
	}
	if !same(true) {
		return false
	}
	if !slices.ContainsFunc(c.deps, func(d dep) bool { return !d.global }) {
		return true // no personal file: no switch
	}
	ok := false
	if err := as.do(func() error { ok = same(false); return nil }); err != nil {
		return false // could not look: compile again, which reports the failure
	}
	return ok
}

// maxCached bounds the compile cache (one entry per user script plus globals).
const maxCached = 10000

// DefaultSieveSettings make spamtest/virustest read the milter's headers
// (Pigeonhole's sieve_spamtest_* settings).
func DefaultSieveSettings() map[string]string {
	return map[string]string{
		"sieve_spamtest_status_type":    "score",
		"sieve_spamtest_status_header":  `X-Spam-Score: (-?[0-9]+(\.[0-9]+)?)`,
		"sieve_spamtest_max_value":      "15",
		"sieve_virustest_status_type":   "text",
		"sieve_virustest_status_header": "X-Virus-Status",
		"sieve_virustest_text_value1":   "clean",
		"sieve_virustest_text_value5":   "infected",
		"recipient_delimiter":           "+",
	}
}

// NewSieveFilter builds the filter; cfg.Settings and then settings override
// DefaultSieveSettings.
func NewSieveFilter(cfg SieveConfig, delimiter string, settings map[string]string, log *slog.Logger) *SieveFilter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := DefaultSieveSettings()
	s["recipient_delimiter"] = delimiter
	for k, v := range cfg.Settings {
		s[k] = v
	}
	for k, v := range settings {
		s[k] = v
	}
	return &SieveFilter{cfg: cfg, settings: s, log: log, open: openScript, cache: map[string]*cached{}}
}

// openScript opens a script file for reading. The open does not block: a
// FIFO the user made their script (or an include) would wait for a writer
// for ever, holding the delivery and its thread; it, and anything else that
// is not a regular file, is refused — a script error, so the implicit keep.
func openScript(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		fh.Close()
		return nil, err
	}
	return fh, nil
}

// load returns the compiled script at path, nil if it does not exist. The
// script and its :personal includes are looked at and read with as's
// credentials (the user's, for the user's script: a symlink to a file the user
// cannot read fails as it would for the user, and root never reads it), its
// :global includes with the daemon's.
func (f *SieveFilter) load(path string, personalDir string, as asFunc) (*sieve.Script, error) {
	st, err := statAs(as, path) // follows the active-script symlink
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, scriptErr(fmt.Errorf("sieve script %s: %w", path, err))
	}
	key := path
	cur := stampOf(path, st)
	f.mu.Lock()
	c := f.cache[key]
	f.mu.Unlock()
	if c != nil && c.fresh(cur, as) {
		return c.script, c.err
	}
	c = &cached{stamp: cur}
	max := int64(f.cfg.MaxScriptSize)
	if max <= 0 {
		max = 1 << 20
	}
	if st.Size() > max {
		c.err = fmt.Errorf("sieve script %s: %d bytes exceeds the limit of %d", path, st.Size(), max)
	} else if src, err := readFileAs(as, f.open, path, max); err != nil {
		return nil, scriptErr(fmt.Errorf("sieve script %s: %w", path, err))
	} else {
		inc := &includeLoader{personal: personalDir, global: f.globalDir(), max: max, open: f.open, as: as}
		c.script, c.err = sieve.Compile(filepath.Base(path), src, &sieve.Options{Includes: inc})
		c.deps = inc.deps
		if inc.tempErr != nil {
			// The compile saw an include as missing only because reading it
			// failed for now: neither keep that result nor run without the rules.
			return nil, &TempError{Err: fmt.Errorf("sieve script %s: %w", path, inc.tempErr)}
		}
	}
	f.mu.Lock()
	if len(f.cache) >= maxCached {
		clear(f.cache)
	}
	f.cache[key] = c
	f.mu.Unlock()
	return c.script, c.err
}

// scriptErr marks a script that could not be read for a reason that may pass
// (EIO, ESTALE on NFS, EMFILE under load) as a TempError: as in Pigeonhole
// (SIEVE_ERROR_TEMP_FAILURE), the recipient is tempfailed and the MTA retries,
// instead of the message being kept without the user's or the admin's rules
// (no redirect, no vacation, spam in INBOX). A missing file, a permission
// problem or a name that can never resolve stays an error for the implicit
// keep.
func scriptErr(err error) error {
	if transientFSError(err) {
		return &TempError{Err: err}
	}
	return err
}

func transientFSError(err error) bool {
	if errors.Is(err, maildir.ErrCredentials) {
		return true // the user's credentials could not be taken on: nothing was read
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false // "larger than the limit", a compile error …
	}
	for _, perm := range []error{os.ErrNotExist, os.ErrPermission, syscall.ENOTDIR, syscall.ELOOP,
		syscall.ENAMETOOLONG, syscall.EISDIR} {
		if errors.Is(err, perm) {
			return false
		}
	}
	return true
}

// readFileAs is readFileLimited with as's credentials: the open is checked
// against them (reading the descriptor needs no more).
func readFileAs(as asFunc, open func(string) (*os.File, error), path string, max int64) (b []byte, err error) {
	err = as.do(func() (err error) { b, err = readFileLimited(open, path, max); return err })
	return b, err
}

func readFileLimited(open func(string) (*os.File, error), path string, max int64) ([]byte, error) {
	fh, err := open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("larger than %d bytes", max)
	}
	return b, err
}

func (f *SieveFilter) globalDir() string {
	if len(f.cfg.Before) > 0 {
		return filepath.Dir(f.cfg.Before[0])
	}
	if len(f.cfg.After) > 0 {
		return filepath.Dir(f.cfg.After[0])
	}
	return ""
}

// includeLoader reads included scripts and remembers each file it consulted, so
// the including script is recompiled when one of them changes or appears.
type includeLoader struct {
	personal, global string
	max              int64
	open             func(string) (*os.File, error)
	as               asFunc // for the personal scripts; the global ones are the daemon's
	deps             []dep
	tempErr          error // an include that could not be read for now
}

func (l *includeLoader) LoadScript(loc sieve.IncludeLocation, name string) ([]byte, error) {
	dir := l.personal
	if loc == sieve.Global {
		dir = l.global
	}
	if dir == "" || name == "" || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return nil, sieve.ErrScriptNotFound
	}
	p := filepath.Join(dir, name+".sieve")
	global := loc == sieve.Global
	as := l.as
	if global {
		as = nil
	}
	var b []byte
	err := as.do(func() (err error) {
		l.deps = append(l.deps, dep{stamp(p), global}) // before reading: a later change shows
		b, err = readFileLimited(l.open, p, l.max)
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil, sieve.ErrScriptNotFound
	}
	if err != nil && transientFSError(err) && l.tempErr == nil {
		l.tempErr = err
	}
	return b, err
}

// Filter implements Filter. A compile error in any script aborts the sequence with
// an implicit keep (returned as an error the caller logs), as Pigeonhole does.
func (f *SieveFilter) Filter(ctx context.Context, in *FilterInput) (*Verdict, error) {
	v, _, err := f.filterWithHeaders(ctx, in)
	return v, err
}

// filterWithHeaders implements actionHeaderFilter: Filter, and for each action
// of the verdict the header it delivers.
func (f *SieveFilter) filterWithHeaders(ctx context.Context, in *FilterInput) (*Verdict, []*headerEdit, error) {
	var before, after []*sieve.Script
	for _, p := range f.cfg.Before {
		s, err := f.load(p, "", nil)
		if err != nil {
			return nil, nil, err
		}
		if s != nil {
			before = append(before, s)
		}
	}
	var user *sieve.Script
	if f.cfg.UserScript != "" && in.Home != "" {
		s, err := f.load(expandHome(f.cfg.UserScript, in.Home), expandHome(f.cfg.UserDir, in.Home), in.AsUser)
		if err != nil {
			return nil, nil, err
		}
		user = s
	}
	for _, p := range f.cfg.After {
		s, err := f.load(p, "", nil)
		if err != nil {
			return nil, nil, err
		}
		if s != nil {
			after = append(after, s)
		}
	}
	if len(before) == 0 && user == nil && len(after) == 0 {
		return &Verdict{Actions: []Action{{Type: ActKeep, Implicit: true}}}, nil, nil
	}
	now := in.Now
	msg := sieve.NewMessage(in.Message)
	env := &sieve.Env{
		Message:  msg,
		Envelope: sieve.Envelope{From: in.From, To: in.To},
		Now:      func() time.Time { return now },
		Environment: map[string]string{
			"location": "MDA", "phase": "during", "name": "dovetail",
		},
		Config: f.settings,
	}
	if in.Mailboxes != nil {
		env.Mailboxes = mailboxFunc(in.Mailboxes)
	}
	if in.Seen != nil {
		env.Duplicates = seenFunc(in.Seen)
	}
	// A runtime error comes with Pigeonhole's failure result, which is what
	// gets delivered: the actions of the scripts that finished before the
	// failing one (Pigeonhole has executed them by then) and the implicit keep.
	// The error is in res.Errors, for the caller to log. A temporary one (the
	// duplicate store did not answer) is no script error: delivering the
	// failure result would do what the script does not (`if duplicate
	// { discard; }` keeps a second copy), so the recipient is tempfailed and
	// the whole sequence runs again on the retry.
	res, err := sieve.RunMulti(ctx, env, before, user, after)
	if errors.Is(err, sieve.ErrTemporary) {
		return nil, nil, &TempError{Err: err}
	}
	v, edits := convertResult(res, msg)
	return v, edits, nil
}

type mailboxFunc func(string) bool

func (m mailboxFunc) MailboxExists(name string) bool { return m(name) }

type seenFunc func(context.Context, string) (bool, error)

func (s seenFunc) Check(ctx context.Context, id string) (bool, error) { return s(ctx, id) }

func convertResult(res *sieve.Result, msg *sieve.Message) (*Verdict, []*headerEdit) {
	v := &Verdict{Errors: res.Errors}
	var edits []*headerEdit
	// Actions taken between the same two header edits share one header list;
	// they share one rendering too.
	type snapshot struct {
		first *sieve.Header
		n     int
	}
	rendered := map[snapshot]*headerEdit{}
	for _, a := range res.Actions {
		t := a.Type
		if t == "ereject" {
			t = ActReject
		}
		switch t {
		case ActKeep, ActFileinto, ActRedirect, ActReject, ActDiscard, ActVacation, ActQuarantine:
		default:
			// notify, report: not carried out by lmtpd (none cancels the implicit
			// keep); header edits arrive via Headers.
			v.Ignored = append(v.Ignored, t)
			continue
		}
		v.Actions = append(v.Actions, Action{
			Type: t, Mailbox: a.Mailbox, Flags: a.Flags, Create: a.Create, Copy: a.Copy,
			Address: a.Address, Reason: a.Reason, Subject: a.Subject, From: a.From,
			Period: secondsDuration(a.Seconds), Handle: a.Handle,
			Addresses: a.Addresses, Mime: a.Mime, Implicit: a.Implicit,
		})
		var e *headerEdit
		if a.Headers != nil {
			key := snapshot{n: len(a.Headers)}
			if len(a.Headers) > 0 {
				key.first = &a.Headers[0]
			}
			if e = rendered[key]; e == nil {
				e = &headerEdit{}
				e.hdr, e.hlen = editedHeader(a.Headers, msg)
				rendered[key] = e
			}
		}
		edits = append(edits, e)
	}
	if res.HeadersEdited && len(res.Errors) == 0 {
		v.Header, v.HeaderLen = editedHeader(res.Headers, msg)
	}
	for _, m := range res.DuplicateMarks {
		v.Marks = append(v.Marks, Mark{ID: m.ID, Period: m.Period})
	}
	return v, edits
}

// headerEdit is the header one action delivers (editheader as it stood when the
// script took the action): hdr replaces the first hlen bytes of the message.
type headerEdit struct {
	hdr  []byte
	hlen int
}

// editedHeader renders the header list an editheader script left and returns it
// with the length of the original header it replaces. The replaced extent is
// exactly what the Sieve parser read as fields (it stops at the empty line or at
// the first line that is no header field), and every field the script did not add
// is copied from the message byte for byte: whatever the parser did not see, or
// saw but nobody edited, reaches the mailbox unchanged.
func editedHeader(hs []sieve.Header, msg *sieve.Message) ([]byte, int) {
	raw := msg.Raw()
	var b bytes.Buffer
	for _, h := range hs {
		if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
			b.WriteByte('\n') // the message's last line, without a break, is followed by more now
		}
		if start, end, ok := h.Span(); ok && end <= len(raw) {
			b.Write(raw[start:end])
		} else {
			b.WriteString(h.Name + ": " + strings.ReplaceAll(h.Value, "\r\n", "\n") + "\n")
		}
	}
	if b.Len() == 0 {
		// every field deleted: still an edit (nil would mean "unchanged")
		return []byte{}, msg.HeaderEnd()
	}
	return b.Bytes(), msg.HeaderEnd()
}

// secondsDuration converts a vacation period in seconds, saturating instead of
// wrapping past time.Duration's range (":days 999999" without a configured
// maximum would otherwise come out negative, i.e. the minimum period).
func secondsDuration(s int64) time.Duration {
	const max = int64(math.MaxInt64 / int64(time.Second))
	switch {
	case s > max:
		return time.Duration(math.MaxInt64)
	case s < 0:
		return 0
	}
	return time.Duration(s) * time.Second
}
