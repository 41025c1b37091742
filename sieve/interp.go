package sieve

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

type cmd interface{ exec(r *run) error }
type test interface {
	eval(r *run) (bool, error)
}

var (
	errStop   = errors.New("stop")
	errReturn = errors.New("return")
)

type breakErr struct{ name string }

func (b *breakErr) Error() string { return "break" }

// RuntimeError is an error raised while executing a script. Line and Col
// locate the command that failed (0 when not known, e.g. a limit hit
// between commands at top level).
type RuntimeError struct {
	Script    string
	Line, Col int
	Msg       string
}

func (e *RuntimeError) Error() string {
	switch {
	case e.Script != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.Script, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
	case e.Script != "":
		return e.Script + ": " + e.Msg
	}
	return e.Msg
}

// located records where a command stands, so that a runtime error it raises
// (or one of its tests or block raises and did not place more precisely)
// names the line and column.
type located struct {
	c   cmd
	pos Pos
}

func (l located) exec(r *run) error {
	err := l.c.exec(r)
	if re, ok := err.(*RuntimeError); ok && re.Line == 0 && re.Script == r.script.name {
		re.Line, re.Col = l.pos.Line, l.pos.Col
	}
	return err
}

// execState is shared by every script of one multiscript run.
type execState struct {
	actions       []*Action
	keepCancelled bool // implicit keep cancelled by some action
	explicitKeep  bool
	redirects     int
	flags         []string // imap4flags internal variable
	flagsSet      bool
	headers       []Header
	headersEdited bool
	// addedHeaderBytes is what addheader added so far (maxAddedHeaderBytes)
	addedHeaderBytes int
	dupMarks         []DuplicateMark
	errors           []error
	warnings         []string
	origin           []int // script number that produced each action
	scriptNo         int
}

type run struct {
	ctx      context.Context
	env      *Env
	lim      Limits
	script   *Script
	st       *execState
	vars     map[string]string
	globals  map[string]string
	match    []string
	steps    *int
	deadline time.Time
	mime     *mimeIter // current foreverypart part (nil: top level)
	incStack []*Script
	incCount *int
	onceDone map[*Script]bool
	reCache  map[string]*compiledRegex
}

func (r *run) step() error {
	*r.steps++
	if *r.steps > r.lim.MaxSteps {
		return r.runtimeErr("execution exceeded the step limit (%d)", r.lim.MaxSteps)
	}
	if *r.steps&15 == 0 {
		return r.checkTime()
	}
	return nil
}

// checkTime is the deadline and cancellation check; operations whose single
// call can take long (matching a large value) make it themselves, not only
// between steps.
func (r *run) checkTime() error {
	if time.Now().After(r.deadline) {
		return r.runtimeErr("execution exceeded CPU time limit")
	}
	if err := r.ctx.Err(); err != nil {
		return r.runtimeErr("execution aborted: %v", err)
	}
	return nil
}

func (r *run) warn(format string, args ...any) {
	if len(r.st.warnings) < 100 {
		r.st.warnings = append(r.st.warnings, r.script.name+": "+fmt.Sprintf(format, args...))
	}
}

func (r *run) runtimeErr(format string, args ...any) error {
	return &RuntimeError{Script: r.script.name, Msg: fmt.Sprintf(format, args...)}
}

func (r *run) now() time.Time {
	if r.env.Now != nil {
		return r.env.Now()
	}
	return time.Now()
}

func (r *run) config(key string) (string, bool) {
	if r.env.Config == nil {
		return "", false
	}
	v, ok := r.env.Config[key]
	return v, ok
}

func (r *run) setMatch(caps []string) {
	if len(caps) > r.lim.MaxMatchValues {
		caps = caps[:r.lim.MaxMatchValues]
	}
	r.match = caps
}

// expand evaluates a string with variable references. The result is capped
// at four times the variable size; appending stops there, since a string
// with many references to a large variable would otherwise be built in full
// (gigabytes) only to be cut.
func (r *run) expand(s *strv) string {
	if s.parts == nil {
		return s.lit
	}
	limit := r.lim.MaxVariableSize * 4
	var b strings.Builder
	add := func(v string) bool {
		if limit > 0 && b.Len()+len(v) >= limit {
			b.WriteString(v[:limit-b.Len()])
			return false
		}
		b.WriteString(v)
		return true
	}
	for _, p := range s.parts {
		var v string
		switch {
		case p.num >= 0 && p.name == "":
			if p.num < len(r.match) {
				v = r.match[p.num]
			}
		case p.name != "":
			v = r.getVar(p.name)
		default:
			v = p.lit
		}
		if !add(v) {
			break
		}
	}
	return b.String()
}

func (r *run) expandList(ss []strv) []string {
	out := make([]string, len(ss))
	for i := range ss {
		out[i] = r.expand(&ss[i])
	}
	return out
}

func (r *run) getVar(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		ns := name[:i]
		switch ns {
		case "env":
			if r.script.exts["vnd.dovecot.environment"] {
				// variable names cannot hold '-': env.vnd.dovecot.default_mailbox
				// names the item vnd.dovecot.default-mailbox
				item := name[i+1:]
				v, ok := r.environment(item)
				if !ok {
					v, _ = r.environment(strings.ReplaceAll(item, "_", "-"))
				}
				return v
			}
		case "tst":
			if r.script.suite != nil {
				return r.script.suite.nsVar(r, name[i+1:])
			}
		case "global":
			return r.globals[name[i+1:]]
		}
		return ""
	}
	if v, ok := r.vars[name]; ok {
		return v
	}
	return ""
}

func (r *run) setVar(name, val string) {
	if len(val) > r.lim.MaxVariableSize {
		val = truncUTF8(val, r.lim.MaxVariableSize)
	}
	if strings.HasPrefix(name, "global.") {
		r.globals[name[7:]] = val
		return
	}
	if r.vars == nil {
		r.vars = map[string]string{}
	}
	r.vars[name] = val
}

func execBlock(r *run, cmds []cmd) error {
	for _, c := range cmds {
		if err := r.step(); err != nil {
			return err
		}
		if err := c.exec(r); err != nil {
			return err
		}
	}
	return nil
}

// ---- control

type ifBranch struct {
	cond test // nil for else
	body []cmd
}

type ifCmd struct{ branches []ifBranch }

func (c *ifCmd) exec(r *run) error {
	for _, b := range c.branches {
		if b.cond != nil {
			ok, err := b.cond.eval(r)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		return execBlock(r, b.body)
	}
	return nil
}

type stopCmd struct{}

func (stopCmd) exec(*run) error { return errStop }

// ---- result handling

func actionName(a *Action) string {
	switch a.Type {
	case "fileinto":
		return "store"
	}
	return a.Type
}

func (r *run) addAction(a *Action, cancelsKeep bool) error {
	st := r.st
	// duplicates / conflicts
	for i, o := range st.actions {
		if o.Implicit {
			continue
		}
		sameScript := st.origin[i] == st.scriptNo
		if isStore(o) && isStore(a) && mailboxEq(o.Mailbox, a.Mailbox) {
			if a.Type == "keep" && o.Type != "keep" {
				o.Type = "keep"
			}
			// merge flags: latest wins (Pigeonhole merges); keep the first
			if a.Flags != nil || o.Flags != nil {
				o.Flags = mergeFlags(o.Flags, a.Flags)
			}
			if cancelsKeep {
				st.keepCancelled = true
			}
			if a.Type == "keep" {
				st.explicitKeep = true
			}
			return nil
		}
		if o.Type == "redirect" && a.Type == "redirect" && strings.EqualFold(o.Address, a.Address) {
			if cancelsKeep {
				st.keepCancelled = true
			}
			return nil
		}
		if (o.Type == "reject" || o.Type == "ereject") && (a.Type == "reject" || a.Type == "ereject") {
			if !sameScript {
				// an earlier script already rejected: discard gracefully
				return nil
			}
			return r.runtimeErr("duplicate reject/ereject action not allowed")
		}
		if !sameScript {
			// actions of earlier scripts were already executed; no conflict
			continue
		}
		if (o.Type == "reject" || o.Type == "ereject") && (isStore(a) || a.Type == "redirect") && !(a.Type == "keep" && false) {
			return r.runtimeErr("%s action conflicts with earlier %s action", a.Type, o.Type)
		}
		if (a.Type == "reject" || a.Type == "ereject") && (isStore(o) || o.Type == "redirect" || o.Type == "vacation") {
			return r.runtimeErr("%s action conflicts with earlier %s action", a.Type, actionName(o))
		}
		if o.Type == "vacation" && a.Type == "vacation" {
			return r.runtimeErr("duplicate vacation action not allowed")
		}
		if o.Type == "discard" && a.Type == "discard" {
			return nil
		}
		if o.Type == "notify" && a.Type == "notify" && o.Method == a.Method {
			return nil
		}
		if o.Type == "quarantine" && a.Type == "quarantine" {
			return nil
		}
	}
	if st.headersEdited {
		a.Headers = st.headers
	}
	if a.Type == "redirect" {
		if st.redirects >= r.lim.MaxRedirects {
			return r.runtimeErr("number of redirect actions exceeds policy limit (%d > %d)", st.redirects+1, r.lim.MaxRedirects)
		}
		st.redirects++
	}
	if len(st.actions) >= r.lim.MaxActions {
		return r.runtimeErr("total number of actions exceeds policy limit (%d > %d)", len(st.actions)+1, r.lim.MaxActions)
	}
	st.actions = append(st.actions, a)
	st.origin = append(st.origin, st.scriptNo)
	if cancelsKeep {
		st.keepCancelled = true
	}
	if a.Type == "keep" {
		st.explicitKeep = true
	}
	return nil
}

func isStore(a *Action) bool { return a.Type == "keep" || a.Type == "fileinto" }

func mailboxEq(a, b string) bool {
	na, nb := normMailbox(a), normMailbox(b)
	return na == nb
}

func normMailbox(m string) string {
	if m == "" || strings.EqualFold(m, "INBOX") {
		return "INBOX"
	}
	if len(m) > 6 && strings.EqualFold(m[:6], "INBOX.") || strings.EqualFold(m[:min(6, len(m))], "INBOX/") {
		return "INBOX" + m[5:]
	}
	return m
}

func mergeFlags(a, b []string) []string {
	if b == nil {
		return a
	}
	return b
}

// ---- running

func newRun(ctx context.Context, env *Env, s *Script, st *execState, steps *int, deadline time.Time) *run {
	inc := 0
	return &run{ctx: ctx, env: env, lim: s.lim, script: s, st: st, globals: map[string]string{}, steps: steps, deadline: deadline, incCount: &inc}
}

func (s *Script) runInto(ctx context.Context, env *Env, st *execState) error {
	st.scriptNo++
	steps := 0
	r := newRun(ctx, env, s, st, &steps, time.Now().Add(s.lim.MaxCPUTime))
	return r.runScript()
}

func (r *run) runScript() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = r.runtimeErr("internal error: %v", p)
		}
	}()
	err = execBlock(r, r.script.body)
	if err == errStop || err == errReturn {
		err = nil
	}
	var be *breakErr
	if errors.As(err, &be) {
		err = nil
	}
	return err
}

func newState(env *Env) *execState {
	st := &execState{}
	if env.Message != nil {
		st.headers = env.Message.headers
	}
	return st
}

func runMulti(ctx context.Context, env *Env, before []*Script, user *Script, after []*Script) (*Result, error) {
	if env == nil {
		env = &Env{}
	}
	if env.Message == nil {
		env.Message = NewMessage(nil)
	}
	st := newState(env)
	var scripts []*Script
	scripts = append(scripts, before...)
	if user != nil {
		scripts = append(scripts, user)
	}
	scripts = append(scripts, after...)
	var firstErr error
	for _, s := range scripts {
		if s == nil {
			continue
		}
		acts, marks := len(st.actions), len(st.dupMarks)
		if err := s.runInto(ctx, env, st); err != nil {
			// As Pigeonhole's multiscript run: the earlier scripts' actions
			// were executed when each finished and stand; the failing
			// script's own are never executed, only the implicit keep.
			st.actions, st.origin = st.actions[:acts], st.origin[:acts]
			st.dupMarks = st.dupMarks[:marks]
			st.errors = append(st.errors, err)
			firstErr = err
			break
		}
		if st.keepCancelled && !st.explicitKeep {
			break
		}
	}
	return st.result(firstErr != nil), firstErr
}

// result finalises the state into a Result. On failure, Pigeonhole keeps
// the message (implicit keep) in addition to the actions of the scripts that
// finished before the failing one (runMulti has dropped the failing
// script's).
func (st *execState) result(failed bool) *Result {
	res := &Result{Errors: st.errors, Warnings: st.warnings}
	for _, a := range st.actions {
		if failed && (a.Type == "reject" || a.Type == "ereject" || a.Type == "discard") {
			continue
		}
		res.Actions = append(res.Actions, *a)
	}
	if failed || !st.keepCancelled {
		hasKeep := false
		for _, a := range res.Actions {
			if a.Type == "keep" {
				hasKeep = true
			}
		}
		if !hasKeep {
			res.ImplicitKeep = true
			k := Action{Type: "keep", Mailbox: "INBOX", Implicit: true}
			if st.headersEdited && !failed {
				k.Headers = st.headers
			}
			if st.flagsSet {
				k.Flags = append([]string(nil), st.flags...)
			}
			res.Actions = append(res.Actions, k)
		}
	}
	if st.headersEdited {
		res.HeadersEdited = true
		res.Headers = st.headers
	}
	res.DuplicateMarks = st.dupMarks
	return res
}

func itoa(n int) string { return strconv.Itoa(n) }

// truncUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
