package sieve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// This file implements vnd.dovecot.testsuite for the conformance runner
// (sieve/conformance_test.go). It is not available to normal scripts: the
// extension can only be required when Options carry a suite runner, which
// only this package can construct.

// SuiteHooks lets the conformance runner drive test blocks.
type suiteHooks interface {
	// Test runs one `test "name" { ... }` block; body runs the block and
	// returns a *TestFailure when it failed.
	Test(name string, body func() error)
}

// testFailure is raised by test_fail.
type testFailure struct{ msg string }

func (f *testFailure) Error() string { return "test failed: " + f.msg }

type sentMsg struct {
	from, to string
	msg      *Message
}

type storedMsg struct {
	msg   *Message
	flags []string
}

type suiteRunner struct {
	dir   string // directory of the .svtest
	file  string
	hooks suiteHooks

	msg      *Message
	envelope Envelope
	config   map[string]string

	compiled  *Script
	binaries  map[string]*Script
	errors    []string
	state     *execState
	executed  int
	mailboxes map[string][]storedMsg
	smtp      []sentMsg
	testName  string
	notified  map[string]bool
	metadata  map[[2]string]string // {mailbox ("" for server), entry} -> value
}

func newSuiteRunner(path string, hooks suiteHooks) *suiteRunner {
	s := &suiteRunner{dir: filepath.Dir(path), file: path, hooks: hooks, config: map[string]string{}, binaries: map[string]*Script{}}
	s.msg = NewMessage([]byte("From: sender@example.com\r\nTo: recipient@example.org\r\nSubject: Frop!\r\n\r\nFrop!\r\n"))
	s.envelope = Envelope{From: "sender@example.com", To: "recipient@example.org"}
	s.resetMailstore()
	return s
}

// deriveEnvelope mimics Pigeonhole's testsuite: the envelope follows the
// message headers (Envelope-To/To, Return-Path/Sender/From).
func (s *suiteRunner) deriveEnvelope() {
	first := func(names ...string) string {
		for _, n := range names {
			if v := headerValues(s.msg.headers, n); len(v) > 0 {
				if ps := parseAddressList(v[0]); len(ps) > 0 && ps[0].ok {
					return ps[0].local + "@" + ps[0].domain
				}
			}
		}
		return ""
	}
	s.envelope = Envelope{To: first("envelope-to", "to"), From: first("return-path", "sender", "from")}
	if s.envelope.To == "" {
		s.envelope.To = "recipient@example.com"
	}
	if s.envelope.From == "" {
		s.envelope.From = "sender@example.com"
	}
}

func (s *suiteRunner) resetMailstore() {
	s.mailboxes = map[string][]storedMsg{"INBOX": nil}
}

func (s *suiteRunner) nsVar(r *run, name string) string {
	switch name {
	case "path":
		return s.dir
	case "name":
		return s.testName
	}
	return ""
}

// LoadScript implements IncludeLoader for the suite: included/ and included-global/.
func (s *suiteRunner) LoadScript(loc IncludeLocation, name string) ([]byte, error) {
	dir := "included"
	if loc == Global {
		dir = "included-global"
	}
	if strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		return nil, ErrScriptNotFound
	}
	b, err := os.ReadFile(filepath.Join(s.dir, dir, name+".sieve"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrScriptNotFound
		}
		return nil, err
	}
	return b, nil
}

// limits maps Pigeonhole settings onto Limits.
func (s *suiteRunner) limits() Limits {
	l := DefaultLimits()
	set := func(k string, dst *int) {
		if v, ok := s.config[k]; ok {
			if n := atoiDefault(v, -1); n > 0 {
				*dst = n
			}
		}
	}
	set("sieve_variables_max_variable_size", &l.MaxVariableSize)
	set("sieve_variables_max_scope_size", &l.MaxVariables)
	set("sieve_include_max_includes", &l.MaxIncludes)
	set("sieve_include_max_nesting_depth", &l.MaxIncludeDepth)
	set("sieve_max_actions", &l.MaxActions)
	set("sieve_max_redirects", &l.MaxRedirects)
	set("sieve_editheader_max_header_size", &l.MaxHeaderSize)
	if v, ok := s.config["sieve_max_cpu_time"]; ok {
		l.MaxCPUTime = parsePeriod(v, l.MaxCPUTime)
	}
	return l
}

func (s *suiteRunner) options() *Options {
	return &Options{Includes: s, Limits: s.limits(), testsuite: s}
}

func (s *suiteRunner) env() *Env {
	return &Env{Message: s.msg, Envelope: s.envelope, Config: s.config, Mailboxes: suiteMailboxes{s}, Metadata: suiteMetadata{s}, Environment: map[string]string{"name": "Pigeonhole Sieve", "location": "MS", "vnd.dovecot.default-mailbox": "INBOX"}}
}

type suiteMailboxes struct{ s *suiteRunner }

// suiteMetadata is the in-memory METADATA store of test_imap_metadata_set.
type suiteMetadata struct{ s *suiteRunner }

func (m suiteMetadata) MailboxMetadata(mailbox, entry string) (string, bool) {
	v, ok := m.s.metadata[[2]string{normMailbox(mailbox), strings.ToLower(entry)}]
	return v, ok
}

func (m suiteMetadata) ServerMetadata(entry string) (string, bool) {
	v, ok := m.s.metadata[[2]string{"", strings.ToLower(entry)}]
	return v, ok
}

// suiteMetadataSetCmd is test_imap_metadata_set [:mailbox <mailbox>] <entry> <value>.
type suiteMetadataSetCmd struct {
	mailbox      *strv
	entry, value strv
}

func (c *suiteMetadataSetCmd) exec(r *run) error {
	s := r.script.suite
	key := [2]string{"", strings.ToLower(r.expand(&c.entry))}
	if c.mailbox != nil {
		key[0] = normMailbox(r.expand(c.mailbox))
	}
	if !validMetadataEntry(key[1]) {
		return r.runtimeErr("test_imap_metadata_set: invalid metadata entry name '%s'", key[1])
	}
	if s.metadata == nil {
		s.metadata = map[[2]string]string{}
	}
	s.metadata[key] = r.expand(&c.value)
	return nil
}

func (m suiteMailboxes) MailboxExists(name string) bool {
	_, ok := m.s.mailboxes[normMailbox(name)]
	return ok
}

func (s *suiteRunner) resetResult() {
	s.state = newState(s.env())
	s.executed = 0
	s.smtp = nil
	s.notified = nil
}

// RunSuiteFile compiles and runs a .svtest file.
func runSuiteFile(path string, hooks suiteHooks) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := newSuiteRunner(path, hooks)
	opts := &Options{Includes: s, testsuite: s}
	sc, err := Compile(filepath.Base(path), src, opts)
	if err != nil {
		return err
	}
	s.resetResult()
	env := s.env()
	steps := 0
	st := s.state
	r := newRun(context.Background(), env, sc, st, &steps, farFuture())
	r.lim.MaxSteps = 1 << 40
	err = r.runScript()
	return err
}

// ---- commands & tests

type suiteTestCmd struct {
	name strv
	body []cmd
}

func (c *suiteTestCmd) exec(r *run) error {
	s := r.script.suite
	name := r.expand(&c.name)
	s.hooks.Test(name, func() error {
		s.testName = name
		s.resetResult()
		r.st = s.state
		r.env = s.env()
		r.onceDone = nil
		*r.steps = 0
		err := execBlock(r, c.body)
		if err == errStop {
			err = nil
		}
		return err
	})
	return nil
}

type suiteFailCmd struct{ msg strv }

func (c *suiteFailCmd) exec(r *run) error { return &testFailure{msg: r.expand(&c.msg)} }

type suiteSetCmd struct{ name, val strv }

func (c *suiteSetCmd) exec(r *run) error {
	s := r.script.suite
	name, val := r.expand(&c.name), r.expand(&c.val)
	switch strings.ToLower(name) {
	case "message":
		s.msg = NewMessage([]byte(val))
		s.deriveEnvelope()
		s.state.headers = s.msg.headers
		s.state.headersEdited = false
	case "envelope.from":
		s.envelope.From = val
	case "envelope.to":
		s.envelope.To = val
	case "envelope.orig_to":
		s.envelope.OrigTo = val
	case "envelope.auth":
		s.envelope.Auth = val
	default:
		return &testFailure{msg: "test_set: unknown item " + name}
	}
	r.env = s.env()
	return nil
}

type suiteConfigCmd struct {
	op       string
	key, val strv
}

func (c *suiteConfigCmd) exec(r *run) error {
	s := r.script.suite
	switch c.op {
	case "set":
		s.config[r.expand(&c.key)] = r.expand(&c.val)
	case "unset":
		delete(s.config, r.expand(&c.key))
	}
	r.lim.MaxVariableSize = s.limits().MaxVariableSize
	r.env = s.env()
	return nil
}

type suiteCompileTest struct{ path strv }

func (t *suiteCompileTest) eval(r *run) (bool, error) {
	s := r.script.suite
	p := r.expand(&t.path)
	s.errors = nil
	s.compiled = nil
	src, err := os.ReadFile(filepath.Join(s.dir, p))
	if err != nil {
		s.errors = append(s.errors, err.Error())
		return false, nil
	}
	sc, err := Compile(filepath.Base(p), src, s.options())
	if err != nil {
		var ce *CompileError
		if errors.As(err, &ce) {
			for _, e := range ce.Errors {
				s.errors = append(s.errors, e.Msg)
			}
			// Pigeonhole reports a final "failed to compile" error
			s.errors = append(s.errors, "error: validation failed / script compilation failed")
		} else {
			s.errors = append(s.errors, err.Error())
		}
		return false, nil
	}
	s.compiled = sc
	return true, nil
}

type suiteRunTest struct{ appendResult bool }

func (t *suiteRunTest) eval(r *run) (bool, error) {
	s := r.script.suite
	if s.compiled == nil {
		return false, nil
	}
	if !t.appendResult {
		s.resetResult()
		r.st = s.state
	}
	s.errors = nil
	nw := len(s.state.warnings)
	err := s.compiled.runInto(r.ctx, s.env(), s.state)
	s.errors = append(s.errors, s.state.warnings[nw:]...)
	if err != nil {
		s.errors = append(s.errors, errMsg(err))
		return false, nil
	}
	return true, nil
}

func errMsg(err error) string {
	var re *RuntimeError
	if errors.As(err, &re) {
		return re.Msg
	}
	return err.Error()
}

type suiteMultiscriptTest struct{ scripts []strv }

func (t *suiteMultiscriptTest) eval(r *run) (bool, error) {
	s := r.script.suite
	var scripts []*Script
	s.errors = nil
	for _, p := range r.expandList(t.scripts) {
		src, err := os.ReadFile(filepath.Join(s.dir, p))
		if err != nil {
			return false, nil
		}
		sc, err := Compile(filepath.Base(p), src, s.options())
		if err != nil {
			return false, nil
		}
		scripts = append(scripts, sc)
	}
	if len(scripts) == 0 {
		return false, nil
	}
	s.resetResult()
	r.st = s.state
	res, err := RunMulti(r.ctx, s.env(), scripts[:len(scripts)-1], scripts[len(scripts)-1], nil)
	if err != nil {
		return false, nil
	}
	ok := s.executeActions(res.Actions)
	return ok, nil
}

type suiteResultActionTest struct {
	m     *matcher
	index int
}

func (t *suiteResultActionTest) eval(r *run) (bool, error) {
	s := r.script.suite
	var names []string
	for _, a := range s.state.actions {
		names = append(names, actionName(a))
	}
	if t.index > 0 {
		if t.index > len(names) {
			return false, nil
		}
		names = names[t.index-1 : t.index]
	}
	return t.m.match(r, names)
}

type suiteErrorTest struct {
	m     *matcher
	index int
}

func (t *suiteErrorTest) eval(r *run) (bool, error) {
	s := r.script.suite
	errs := s.errors
	if t.index > 0 {
		if t.index > len(errs) {
			return false, nil
		}
		errs = errs[t.index-1 : t.index]
	}
	return t.m.match(r, errs)
}

type suiteResetCmd struct{}

func (suiteResetCmd) exec(r *run) error {
	s := r.script.suite
	s.resetResult()
	r.st = s.state
	return nil
}

type suiteExecuteTest struct{}

func (suiteExecuteTest) eval(r *run) (bool, error) {
	s := r.script.suite
	res := s.state.result(false)
	// only actions not executed yet
	acts := res.Actions
	if s.executed > 0 {
		var rest []Action
		for _, a := range acts {
			if a.Implicit {
				continue
			}
			rest = append(rest, a)
		}
		if s.executed <= len(rest) {
			acts = rest[s.executed:]
		} else {
			acts = nil
		}
		if !s.state.keepCancelled {
			// implicit keep is executed at most once
			acts = append(acts, Action{Type: "keep", Implicit: true})
		}
	}
	n := 0
	for _, a := range acts {
		if !a.Implicit {
			n++
		}
	}
	s.errors = nil
	ok := s.executeActions(acts)
	s.executed += n
	if s.state.headersEdited {
		s.msg = NewMessage(renderMessage(s.state.headers, s.msg.body))
	}
	return ok, nil
}

type suiteMessageTest struct {
	smtp   bool
	folder strv
	index  int64
}

func (t *suiteMessageTest) eval(r *run) (bool, error) {
	s := r.script.suite
	if t.smtp {
		if int(t.index) >= len(s.smtp) {
			return false, nil
		}
		m := s.smtp[t.index]
		s.msg = m.msg
		s.envelope = Envelope{From: m.from, To: m.to}
	} else {
		box := normMailbox(r.expand(&t.folder))
		msgs := s.mailboxes[box]
		if int(t.index) >= len(msgs) {
			return false, nil
		}
		s.msg = msgs[t.index].msg
		s.state.flags = append([]string(nil), msgs[t.index].flags...)
		s.state.flagsSet = true
	}
	s.state.headers = s.msg.headers
	s.state.headersEdited = false
	r.env = s.env()
	return true, nil
}

type suiteMailboxCreateCmd struct{ name strv }

func (c *suiteMailboxCreateCmd) exec(r *run) error {
	s := r.script.suite
	box := normMailbox(r.expand(&c.name))
	if _, ok := s.mailboxes[box]; !ok {
		s.mailboxes[box] = nil
	}
	return nil
}

type suiteBinaryCmd struct {
	save bool
	name strv
}

func (c *suiteBinaryCmd) exec(r *run) error {
	s := r.script.suite
	n := r.expand(&c.name)
	if c.save {
		s.binaries[n] = s.compiled
	} else {
		s.compiled = s.binaries[n]
	}
	return nil
}

// executeActions performs the actions against the in-memory mail store and
// SMTP outbox, like Pigeonhole's testsuite result execution.
func (s *suiteRunner) executeActions(acts []Action) bool {
	ok := true
	for _, a := range acts {
		switch a.Type {
		case "keep", "fileinto":
			box := normMailbox(a.Mailbox)
			if !validMailboxName(box) {
				s.errors = append(s.errors, fmt.Sprintf("failed to store into mailbox '%s': Invalid mailbox name", a.Mailbox))
				ok = false
				continue
			}
			if _, exists := s.mailboxes[box]; !exists {
				if !a.Create {
					s.errors = append(s.errors, fmt.Sprintf("failed to store into mailbox '%s': Mailbox doesn't exist: %s", a.Mailbox, a.Mailbox))
					ok = false
					continue
				}
			}
			s.mailboxes[box] = append(s.mailboxes[box], storedMsg{msg: s.actionMessage(a), flags: a.Flags})
		case "redirect":
			env := s.env()
			if o, ok := RedirectMessage(env, &a); ok {
				s.smtp = append(s.smtp, sentMsg{from: o.From, to: o.To, msg: NewMessage(o.Data)})
			}
		case "vacation", "reject", "notify", "report":
			s.smtp = append(s.smtp, composeOutgoing(s, a)...)
		}
	}
	if !ok {
		// fall back to implicit keep into INBOX
		s.mailboxes["INBOX"] = append(s.mailboxes["INBOX"], storedMsg{msg: s.msg})
	}
	return ok
}

func (s *suiteRunner) actionMessage(a Action) *Message {
	if a.Headers != nil {
		return NewMessage(renderMessage(a.Headers, s.msg.body))
	}
	return s.msg
}

func validMailboxName(b string) bool {
	if b == "" || strings.HasPrefix(b, ".") || strings.HasSuffix(b, ".") || strings.Contains(b, "..") || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") || strings.Contains(b, "//") {
		return false
	}
	for _, ch := range b {
		if ch < 0x20 || ch == 0x7f || ch == '*' || ch == '%' {
			return false
		}
	}
	return true
}

// fieldSize is the length of h as renderMessage writes it ("Name: Value\r\n").
func fieldSize(h Header) int { return len(h.Name) + 2 + len(h.Value) + 2 }

// renderedSize is len(renderMessage(hs, body)), counted without building it.
func renderedSize(hs []Header, body []byte) int {
	n := 2 + len(body)
	for _, h := range hs {
		n += fieldSize(h)
	}
	return n
}

// renderMessage serialises headers + body.
func renderMessage(hs []Header, body []byte) []byte {
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return []byte(b.String())
}

func farFuture() time.Time { return time.Now().Add(time.Hour) }

func init() {
	commands["test"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, block: true, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		name, _ := a.str("name")
		if a.failed {
			return nil
		}
		return &suiteTestCmd{name: name, body: c.block(n.block)}
	}}
	commands["test_fail"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		m, _ := a.str("reason")
		return &suiteFailCmd{msg: m}
	}}
	commands["test_set"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		k, _ := a.str("item")
		v, _ := a.str("value")
		return &suiteSetCmd{name: k, val: v}
	}}
	commands["test_config_set"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		k, _ := a.str("setting")
		v, _ := a.str("value")
		return &suiteConfigCmd{op: "set", key: k, val: v}
	}}
	commands["test_config_unset"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		k, _ := a.str("setting")
		return &suiteConfigCmd{op: "unset", key: k}
	}}
	commands["test_config_reload"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		for t, ok := a.tag(); ok; t, ok = a.tag() {
			if t.tag == "extension" {
				a.str("extension")
				continue
			}
			a.unknownTag(t)
		}
		return nopCmd{}
	}}
	for _, nm := range []string{"test_result_print", "test_message_print"} {
		commands[nm] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd { return nopCmd{} }}
	}
	commands["test_result_reset"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd { return suiteResetCmd{} }}
	commands["test_mailbox_create"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		m, _ := a.str("mailbox")
		return &suiteMailboxCreateCmd{name: m}
	}}
	commands["test_imap_metadata_set"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		mc := &suiteMetadataSetCmd{}
		for t, ok := a.tag(); ok; t, ok = a.tag() {
			if t.tag != "mailbox" {
				a.unknownTag(t)
				continue
			}
			mb, _ := a.str("mailbox")
			mc.mailbox = &mb
		}
		mc.entry, _ = a.str("annotation")
		mc.value, _ = a.str("value")
		if a.failed {
			return nil
		}
		return mc
	}}
	commands["test_binary_save"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		m, _ := a.str("name")
		return &suiteBinaryCmd{save: true, name: m}
	}}
	commands["test_binary_load"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		m, _ := a.str("name")
		return &suiteBinaryCmd{name: m}
	}}
	msgFn := func(c *compiler, a *argp) *suiteMessageTest {
		t := &suiteMessageTest{}
		for tg, ok := a.tag(); ok; tg, ok = a.tag() {
			switch tg.tag {
			case "smtp":
				t.smtp = true
			case "folder":
				t.folder, _ = a.str("folder")
			default:
				a.unknownTag(tg)
			}
		}
		t.index, _ = a.num("index")
		return t
	}
	commands["test_message"] = cmdDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		t := msgFn(c, a)
		return testCmd{t}
	}}
	tests["test_message"] = testDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *testNode, a *argp) test { return msgFn(c, a) }}
	tests["test_script_compile"] = testDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *testNode, a *argp) test {
		p, _ := a.str("path")
		return &suiteCompileTest{path: p}
	}}
	tests["test_script_run"] = testDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *testNode, a *argp) test {
		t := &suiteRunTest{}
		for tg, ok := a.tag(); ok; tg, ok = a.tag() {
			if tg.tag == "append_result" {
				t.appendResult = true
				continue
			}
			a.unknownTag(tg)
		}
		return t
	}}
	tests["test_multiscript"] = testDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *testNode, a *argp) test {
		return &suiteMultiscriptTest{scripts: a.strList("scripts")}
	}}
	tests["test_result_execute"] = testDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *testNode, a *argp) test { return suiteExecuteTest{} }}
	idxMatch := func(c *compiler, a *argp) (*matcher, int) {
		var ms matchSpec
		idx := 0
		for tg, ok := a.tag(); ok; tg, ok = a.tag() {
			if tg.tag == "index" {
				n, _ := a.num("index")
				idx = int(n)
				continue
			}
			if !c.stdTag(a, tg, &ms, stdMatch) {
				a.unknownTag(tg)
			}
		}
		var keys []strv
		if a.more() {
			keys = a.strList("keys")
		} else if ms.kind != mCount {
			keys = []strv{constStr("*")}
			ms.kind, ms.kindSet = mMatches, true
		}
		return c.finishMatch(a, &ms, keys), idx
	}
	tests["test_result_action"] = testDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *testNode, a *argp) test {
		m, idx := idxMatch(c, a)
		if m == nil {
			return nil
		}
		return &suiteResultActionTest{m: m, index: idx}
	}}
	tests["test_error"] = testDef{exts: []string{"vnd.dovecot.testsuite"}, fn: func(c *compiler, n *testNode, a *argp) test {
		m, idx := idxMatch(c, a)
		if m == nil {
			return nil
		}
		return &suiteErrorTest{m: m, index: idx}
	}}
}

// testCmd runs a test as a command (result ignored).
type testCmd struct{ t test }

func (c testCmd) exec(r *run) error {
	_, err := c.t.eval(r)
	return err
}

var _ = strconv.Itoa
