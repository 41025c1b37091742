package lmtpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/lmtpd/maildir"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeDir is an in-memory directory.
type fakeDir struct {
	users map[string]*directory.User
	err   error
}

func (f *fakeDir) LookupLogin(ctx context.Context, login string) (*directory.User, error) {
	for _, u := range f.users {
		if u.Login == login {
			return u, nil
		}
	}
	return nil, directory.ErrNotFound
}

func (f *fakeDir) LookupAddress(ctx context.Context, addr string) (*directory.User, error) {
	if f.err != nil {
		return nil, f.err
	}
	if u, ok := f.users[strings.ToLower(addr)]; ok {
		return u, nil
	}
	return nil, fmt.Errorf("%w: %s", directory.ErrNotFound, addr)
}

// fakeFilter returns fixed actions per user login.
type fakeFilter struct {
	acts map[string][]Action
	err  error
}

func (f *fakeFilter) Filter(ctx context.Context, in *FilterInput) (*Verdict, error) {
	if f.err != nil {
		return nil, f.err
	}
	if a, ok := f.acts[in.User.Login]; ok {
		return &Verdict{Actions: a}, nil
	}
	return &Verdict{Actions: []Action{{Type: ActKeep, Implicit: true}}}, nil
}

// fakeSender records submitted messages; with err set it records the attempt
// and fails.
type fakeSender struct {
	mu       sync.Mutex
	sent     []string
	attempts int
	err      error
}

func (s *fakeSender) Send(ctx context.Context, from string, rcpts []string, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.err != nil {
		return s.err
	}
	s.sent = append(s.sent, fmt.Sprintf("from=<%s> to=%v\n%s", from, rcpts, msg))
	return nil
}

type env struct {
	t      *testing.T
	dir    string
	addr   string
	users  *fakeDir
	sender *fakeSender
	quar   *quarantine.Store
	srv    *Server
}

func newEnv(t *testing.T, mut func(*Options)) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t: t, dir: root, sender: &fakeSender{}}
	e.users = &fakeDir{users: map[string]*directory.User{}}
	for _, n := range []string{"alice", "bob", "carol"} {
		e.users.users[n+"@example.com"] = &directory.User{Login: n, Addresses: []string{n + "@example.com"}, Home: filepath.Join(root, n), Enabled: n != "bob"}
	}
	q, err := quarantine.Open(quarantine.Config{Dir: filepath.Join(root, "quarantine")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	e.quar = q
	cfg := DefaultConfig()
	cfg.Hostname = "mx.test"
	o := Options{Config: cfg, Directory: e.users, Store: mem.New(), Sender: e.sender, Quarantine: q}
	if mut != nil {
		mut(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	e.addr, e.srv = ln.Addr().String(), srv
	return e
}

// conv runs a raw LMTP conversation: lines are sent one by one; replies are read
// after each command (after DATA's dot: want replies).
type conv struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (e *env) dial() *conv {
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	v := &conv{t: e.t, c: c, r: bufio.NewReader(c)}
	v.reply()
	v.cmd("LHLO client.test")
	return v
}

// reply reads one (multi-line) reply and returns its last line.
func (v *conv) reply() string {
	v.t.Helper()
	v.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		l, err := v.r.ReadString('\n')
		if err != nil {
			v.t.Fatalf("read reply: %v", err)
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

func (v *conv) cmd(s string) string {
	v.t.Helper()
	fmt.Fprintf(v.c, "%s\r\n", s)
	return v.reply()
}

// send does one transaction and returns the RCPT replies and the DATA replies.
func (v *conv) send(from string, rcpts []string, msg string) (rcptReplies, dataReplies []string) {
	v.t.Helper()
	if r := v.cmd("MAIL FROM:<" + from + ">"); !strings.HasPrefix(r, "250") {
		v.t.Fatalf("MAIL: %s", r)
	}
	ok := 0
	for _, r := range rcpts {
		rep := v.cmd("RCPT TO:<" + r + ">")
		rcptReplies = append(rcptReplies, rep)
		if strings.HasPrefix(rep, "250") {
			ok++
		}
	}
	if ok == 0 {
		v.cmd("RSET")
		return rcptReplies, nil
	}
	if r := v.cmd("DATA"); !strings.HasPrefix(r, "354") {
		v.t.Fatalf("DATA: %s", r)
	}
	io.WriteString(v.c, dataWire(msg))
	for i := 0; i < ok; i++ {
		dataReplies = append(dataReplies, v.reply())
	}
	return rcptReplies, dataReplies
}

// dataWire is msg as the LMTP client sends it after DATA: CRLF (a lone CR
// stays), dot-stuffed, with the final dot.
func dataWire(msg string) string {
	w := strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	w = strings.ReplaceAll("\r\n"+w, "\r\n.", "\r\n..")[2:]
	return w + ".\r\n"
}

const testMsg = "Received: from mail.example.net (mail.example.net [192.0.2.1])\n" +
	"\tby mx.example.com (Postfix) with ESMTP id 4AbCdEfGh1; Mon, 23 Nov 2026 10:00:00 +0000\n" +
	"From: Sender <sender@example.net>\nTo: alice@example.com, carol@example.com\nSubject: hello\n" +
	"Message-ID: <m1@example.net>\n\nbody line 1\nbody line 2\n"

func files(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out
}

var nameRE = regexp.MustCompile(`^\d+\.M\d+P\d+\.[^,]+,S=(\d+),W=(\d+)(:2,[A-Za-z]*)?$`)

func TestDeliverInboxDovecotNames(t *testing.T) {
	e := newEnv(t, nil)
	v := e.dial()
	_, data := v.send("sender@example.net", []string{"alice@example.com"}, testMsg)
	if len(data) != 1 || !regexp.MustCompile(`^250 2\.0\.0 <alice@example.com> \S+ Saved$`).MatchString(data[0]) {
		t.Fatalf("DATA replies %q", data)
	}
	fs := files(t, filepath.Join(e.dir, "alice/Maildir/new"))
	if len(fs) != 1 {
		t.Fatalf("new/ has %d files", len(fs))
	}
	m := nameRE.FindStringSubmatch(filepath.Base(fs[0]))
	if m == nil {
		t.Fatalf("name %q is not Dovecot-style", filepath.Base(fs[0]))
	}
	b, _ := os.ReadFile(fs[0])
	if strings.Contains(string(b), "\r") {
		t.Error("stored message has CR")
	}
	if fmt.Sprint(len(b)) != m[1] || fmt.Sprint(len(b)+strings.Count(string(b), "\n")) != m[2] {
		t.Errorf("S=%s W=%s for %d bytes", m[1], m[2], len(b))
	}
	for _, h := range []string{"Return-Path: <sender@example.net>\n", "Delivered-To: alice@example.com\n", "by mx.test (dovetail) with LMTP"} {
		if !strings.Contains(string(b), h) {
			t.Errorf("missing %q in\n%s", h, b)
		}
	}
	if len(files(t, filepath.Join(e.dir, "alice/Maildir/tmp"))) != 0 {
		t.Error("tmp/ not empty")
	}
}

func TestRecipientReplies(t *testing.T) {
	e := newEnv(t, nil)
	v := e.dial()
	rc, data := v.send("s@example.net", []string{"nobody@example.com", "bob@example.com", "alice+lists@example.com", "carol@example.com", "alice@example.com"}, testMsg)
	want := []string{"550 5.1.1", "550 5.2.1", "250", "250", "250"}
	for i, w := range want {
		if !strings.HasPrefix(rc[i], w) {
			t.Errorf("RCPT %d: %q, want %s", i, rc[i], w)
		}
	}
	if len(data) != 3 {
		t.Fatalf("data replies %q", data)
	}
	for i, r := range []string{"alice+lists@example.com", "carol@example.com", "alice@example.com"} {
		if !strings.Contains(data[i], "<"+r+">") || !strings.HasPrefix(data[i], "250 ") {
			t.Errorf("reply %d = %q, want 250 for %s (RCPT order)", i, data[i], r)
		}
	}
	// One file written, hard-linked to the others; no Delivered-To with 3 recipients.
	a := files(t, filepath.Join(e.dir, "alice/Maildir/new"))
	c := files(t, filepath.Join(e.dir, "carol/Maildir/new"))
	// alice+lists and alice are one user: the second copy is a duplicate Message-ID.
	if len(a) != 1 || len(c) != 1 {
		t.Fatalf("alice %d carol %d files", len(a), len(c))
	}
	sa, _ := os.Stat(c[0])
	if st, ok := sa.Sys().(*syscall.Stat_t); !ok || st.Nlink < 2 {
		t.Errorf("carol's copy is not hard-linked")
	}
	b, _ := os.ReadFile(c[0])
	if strings.Contains(string(b), "Delivered-To:") {
		t.Error("Delivered-To with several recipients")
	}
	if r := v.cmd("RCPT TO:<>"); r != "" && !strings.HasPrefix(r, "5") {
		t.Errorf("empty RCPT: %s", r)
	}
}

func TestDirectoryDownIsTemporary(t *testing.T) {
	e := newEnv(t, nil)
	e.users.err = fmt.Errorf("ldap: %w", directory.ErrUnavailable)
	v := e.dial()
	rc, _ := v.send("s@example.net", []string{"alice@example.com"}, testMsg)
	if !strings.HasPrefix(rc[0], "451 4.3.0") {
		t.Fatalf("RCPT with directory down: %q", rc[0])
	}
}

func TestQuota(t *testing.T) {
	for _, tempfail := range []bool{false, true} {
		e := newEnv(t, func(o *Options) { o.Config.QuotaFullTempfail = tempfail })
		e.users.users["alice@example.com"].Quota = 600
		v := e.dial()
		_, d1 := v.send("s@example.net", []string{"alice@example.com"}, testMsg)
		_, d2 := v.send("s@example.net", []string{"alice@example.com"}, strings.Replace(testMsg, "m1@", "q2@", 1))
		want := "552 5.2.2"
		if tempfail {
			want = "452 4.2.2"
		}
		if !strings.HasPrefix(d1[0], "250") || !strings.HasPrefix(d2[0], want) {
			t.Fatalf("tempfail=%v: replies %q %q, want 250 then %s", tempfail, d1, d2, want)
		}
		ms, _ := os.ReadFile(filepath.Join(e.dir, "alice/Maildir/maildirsize"))
		if !strings.HasPrefix(string(ms), "600S\n") {
			t.Errorf("maildirsize = %q", ms)
		}
	}
}

type failWriter struct{}

func (f *failWriter) Write(p []byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "tmp", Err: syscall.ENOSPC}
}

func TestDiskFull(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Maildir = &maildir.Options{Fsync: true, WrapWriter: func(io.Writer) io.Writer { return &failWriter{} }}
	})
	v := e.dial()
	_, d := v.send("s@example.net", []string{"alice@example.com"}, testMsg)
	if !strings.HasPrefix(d[0], "452 4.3.1") {
		t.Fatalf("disk full: %q", d)
	}
	for _, sub := range []string{"new", "cur", "tmp"} {
		if fs := files(t, filepath.Join(e.dir, "alice/Maildir", sub)); len(fs) != 0 {
			t.Errorf("%s/ has %v", sub, fs)
		}
	}
}

type edquotWriter struct{}

func (edquotWriter) Write(p []byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "tmp", Err: syscall.EDQUOT}
}

// TestFilesystemQuota: EDQUOT (the user's disk quota) is a full mailbox, as in
// Dovecot — 552 5.2.2, or 452 4.2.2 with quota_full_tempfail — not a full disk.
func TestFilesystemQuota(t *testing.T) {
	for _, tempfail := range []bool{false, true} {
		e := newEnv(t, func(o *Options) {
			o.Config.QuotaFullTempfail = tempfail
			o.Maildir = &maildir.Options{Fsync: true, WrapWriter: func(io.Writer) io.Writer { return edquotWriter{} }}
		})
		_, d := e.dial().send("s@example.net", []string{"alice@example.com"}, testMsg)
		want := "552 5.2.2 <alice@example.com> Quota exceeded"
		if tempfail {
			want = "452 4.2.2 <alice@example.com> Quota exceeded"
		}
		if len(d) != 1 || !strings.HasPrefix(d[0], want) {
			t.Fatalf("tempfail=%v: EDQUOT answered %q, want %s", tempfail, d, want)
		}
		for _, sub := range []string{"new", "cur", "tmp"} {
			if fs := files(t, filepath.Join(e.dir, "alice/Maildir", sub)); len(fs) != 0 {
				t.Errorf("%s/ has %v", sub, fs)
			}
		}
	}
}

// TestMessageOfExactlyMaxSize: max_message_size is the largest message
// accepted (RFC 1870 SIZE), counted as sent (CRLF line ends, before the final
// dot): that size is delivered, one byte more gets 552 5.3.4 — at DATA, or at
// MAIL when SIZE= announces it.
func TestMessageOfExactlyMaxSize(t *testing.T) {
	const limit = 4096
	e := newEnv(t, func(o *Options) { o.Config.MaxMessageSize = limit })
	for _, tc := range []struct {
		size int
		want string
	}{{limit - 1, "250 "}, {limit, "250 "}, {limit + 1, "552 5.3.4"}} {
		msg := "From: s@example.net\nSubject: size\n\n" + strings.Repeat("x", 200) + "\n"
		for len(dataWire(msg))-3 < tc.size {
			msg = strings.Replace(msg, "\n\n", "\n\nx", 1)
		}
		if n := len(dataWire(msg)) - 3; n != tc.size {
			t.Fatalf("built %d bytes, want %d", n, tc.size)
		}
		if _, d := e.dial().send("s@example.net", []string{"alice@example.com"}, msg); !strings.HasPrefix(d[0], tc.want) {
			t.Errorf("%d bytes: %q, want %s", tc.size, d, tc.want)
		}
		v := e.dial()
		r := v.cmd(fmt.Sprintf("MAIL FROM:<s@example.net> SIZE=%d", tc.size))
		if tc.size > limit {
			if !strings.HasPrefix(r, "552 5.3.4") {
				t.Errorf("SIZE=%d: %q, want 552 5.3.4", tc.size, r)
			}
			continue
		}
		v.cmd("RCPT TO:<alice@example.com>")
		v.cmd("DATA")
		io.WriteString(v.c, dataWire(msg))
		if d := v.reply(); !strings.HasPrefix(d, tc.want) {
			t.Errorf("%d bytes with SIZE=: %q, want %s", tc.size, d, tc.want)
		}
	}
}

// TestLHLOAdvertisesMaxMessageSize: LHLO's SIZE keyword is max_message_size
// itself (RFC 1870: the largest message accepted), which Postfix takes as the
// limit, and BDAT holds to it as DATA does: a message of exactly that many
// bytes is delivered, one byte more gets 552 5.3.4.
func TestLHLOAdvertisesMaxMessageSize(t *testing.T) {
	const limit = 4096
	e := newEnv(t, func(o *Options) { o.Config.MaxMessageSize = limit })
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v := &conv{t: t, c: c, r: bufio.NewReader(c)}
	v.reply()
	fmt.Fprintf(c, "LHLO client.test\r\n")
	var caps []string
	for {
		l, err := v.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		caps = append(caps, strings.TrimRight(l[4:], "\r\n"))
		if l[3] != '-' {
			break
		}
	}
	want := fmt.Sprintf("SIZE %d", limit)
	found := false
	for _, cp := range caps {
		if strings.HasPrefix(cp, "SIZE") {
			found = cp == want
			if !found {
				t.Errorf("LHLO advertises %q, want %q", cp, want)
			}
		}
	}
	if !found && !t.Failed() {
		t.Errorf("LHLO without SIZE: %q", caps)
	}

	for _, tc := range []struct {
		size int
		want string
	}{{limit, "250 "}, {limit + 1, "552 5.3.4"}} {
		v := e.dial()
		v.cmd("MAIL FROM:<s@example.net>")
		v.cmd("RCPT TO:<alice@example.com>")
		msg := "Subject: bdat\r\n\r\n" + strings.Repeat("x", tc.size-len("Subject: bdat\r\n\r\n")-2) + "\r\n"
		if len(msg) != tc.size {
			t.Fatalf("built %d bytes, want %d", len(msg), tc.size)
		}
		fmt.Fprintf(v.c, "BDAT %d LAST\r\n%s", len(msg), msg)
		if r := v.reply(); !strings.HasPrefix(r, tc.want) {
			t.Errorf("BDAT of %d bytes: %q, want %s", tc.size, r, tc.want)
		}
	}
}

// TestMaxConnections: past lmtpd.max_connections open sessions a new
// connection is answered 421 4.3.2 and closed (Postfix retries later); when a
// session ends its slot is free again. Each session may hold a message of up
// to max_message_size, so their number is what bounds lmtpd's memory.
func TestMaxConnections(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Config.MaxConnections = 2 })
	a, b := e.dial(), e.dial()
	if g := greeting(t, e.addr); !strings.HasPrefix(g, "421 4.3.2 ") {
		t.Fatalf("third connection greeted %q, want 421 4.3.2", g)
	}
	if r := a.cmd("NOOP"); !strings.HasPrefix(r, "250") {
		t.Fatalf("an open session after the refusal: %q", r)
	}
	b.cmd("QUIT")
	b.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for g := greeting(t, e.addr); !strings.HasPrefix(g, "220 "); g = greeting(t, e.addr) {
		if time.Now().After(deadline) {
			t.Fatalf("a slot freed by QUIT is not given out again: %q", g)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var m dto.Metric
	if err := e.srv.live.Load().Metrics.Refused.Write(&m); err != nil || m.GetCounter().GetValue() < 1 {
		t.Errorf("dovetail_lmtpd_connections_refused_total = %v (%v)", m.GetCounter().GetValue(), err)
	}
}

func TestTooLargeAndVanishingClient(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Config.MaxMessageSize = 4096 })
	v := e.dial()
	_, d := v.send("s@example.net", []string{"alice@example.com"}, testMsg+strings.Repeat(strings.Repeat("x", 99)+"\n", 80))
	if !strings.HasPrefix(d[0], "552 5.3.4") {
		t.Fatalf("too large: %q", d)
	}
	// Client disappears in the middle of DATA.
	v2 := e.dial()
	v2.cmd("MAIL FROM:<s@example.net>")
	v2.cmd("RCPT TO:<alice@example.com>")
	v2.cmd("DATA")
	io.WriteString(v2.c, "Subject: partial\r\n\r\nhalf a mess")
	v2.c.Close()
	time.Sleep(100 * time.Millisecond)
	for _, sub := range []string{"new", "tmp"} {
		if fs := files(t, filepath.Join(e.dir, "alice/Maildir", sub)); len(fs) != 0 {
			t.Errorf("%s/ has %v", sub, fs)
		}
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, nil)
	v := e.dial()
	msg := "Subject: caf\xc3\xa9 8bit\nX-Bare: a\rb\nX-Nul: a\x00b\n\nbare LF\n"
	_, d := v.send("s@example.net", []string{"alice@example.com"}, msg)
	if !strings.HasPrefix(d[0], "250") {
		t.Fatalf("8-bit/NUL/CR message: %q", d)
	}
	fs := files(t, filepath.Join(e.dir, "alice/Maildir/new"))
	b, _ := os.ReadFile(fs[0])
	if strings.Contains(string(b), "\r") {
		t.Error("CR stored")
	}
}

func TestSieveActions(t *testing.T) {
	ff := &fakeFilter{acts: map[string][]Action{
		"alice": {{Type: ActFileinto, Mailbox: "Lists", Create: true, Flags: []string{`\Seen`, "$Label1"}}},
		"carol": {{Type: ActReject, Reason: "go away"}},
	}}
	e := newEnv(t, func(o *Options) { o.Filter = ff })
	v := e.dial()
	_, d := v.send("s@example.net", []string{"alice@example.com", "carol@example.com"}, testMsg)
	if !strings.HasPrefix(d[0], "250") || !strings.HasPrefix(d[1], "550 5.7.1 <carol@example.com> go away") {
		t.Fatalf("replies %q", d)
	}
	fs := files(t, filepath.Join(e.dir, "alice/Maildir/.Lists/cur"))
	if len(fs) != 1 || !strings.HasSuffix(fs[0], ":2,Sa") {
		t.Fatalf(".Lists/cur = %v", fs)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "alice/Maildir/.Lists/maildirfolder")); err != nil {
		t.Error("no maildirfolder marker")
	}
	kw, _ := os.ReadFile(filepath.Join(e.dir, "alice/Maildir/.Lists/dovecot-keywords"))
	if string(kw) != "0 $Label1\n" {
		t.Errorf("dovecot-keywords = %q", kw)
	}
	// fileinto a missing folder without :create → implicit keep in INBOX.
	ff.acts["alice"] = []Action{{Type: ActFileinto, Mailbox: "Nope"}}
	v.send("s@example.net", []string{"alice@example.com"}, strings.Replace(testMsg, "m1@", "m2@", 1))
	if n := len(files(t, filepath.Join(e.dir, "alice/Maildir/new"))); n != 1 {
		t.Errorf("fileinto missing folder: INBOX has %d", n)
	}
}

func TestSieveErrorKeeps(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Filter = &fakeFilter{err: errors.New("compile error")} })
	_, d := e.dial().send("s@example.net", []string{"alice@example.com"}, testMsg)
	if !strings.HasPrefix(d[0], "250") || len(files(t, filepath.Join(e.dir, "alice/Maildir/new"))) != 1 {
		t.Fatalf("sieve error: %q", d)
	}
	e2 := newEnv(t, func(o *Options) { o.Filter = &fakeFilter{err: &TempError{errors.New("x")}} })
	_, d = e2.dial().send("s@example.net", []string{"alice@example.com"}, testMsg)
	if !strings.HasPrefix(d[0], "451") {
		t.Fatalf("sieve temp error: %q", d)
	}
}

func TestVacationOnceNotToLists(t *testing.T) {
	ff := &fakeFilter{acts: map[string][]Action{"alice": {
		{Type: ActKeep}, {Type: ActVacation, Reason: "I am away", Period: 24 * time.Hour},
	}}}
	e := newEnv(t, func(o *Options) { o.Filter = ff })
	v := e.dial()
	for i := 0; i < 2; i++ {
		v.send("sender@example.net", []string{"alice@example.com"}, strings.Replace(testMsg, "m1@", fmt.Sprintf("v%d@", i), 1))
	}
	list := strings.Replace(testMsg, "Subject:", "List-Id: <dev.lists.example.org>\nSubject:", 1)
	v.send("other@example.net", []string{"alice@example.com"}, strings.Replace(list, "m1@", "v3@", 1))
	if len(e.sender.sent) != 1 {
		t.Fatalf("vacation sent %d times: %q", len(e.sender.sent), e.sender.sent)
	}
	s := e.sender.sent[0]
	for _, w := range []string{"from=<> to=[sender@example.net]", "Auto-Submitted: auto-replied", "In-Reply-To: <v0@example.net>", "I am away"} {
		if !strings.Contains(s, w) {
			t.Errorf("vacation reply lacks %q:\n%s", w, s)
		}
	}
}

func TestQuarantineByScoreAndDuplicates(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Config.QuarantineScore = 6 })
	v := e.dial()
	spam := strings.Replace(testMsg, "Subject:", "X-Spam-Flag: YES\nX-Spam-Score: 9.5\nX-Spam-Status: Yes, score=9.5 required=5.0 tests=GTUBE,BAYES_99\nSubject:", 1)
	_, d := v.send("s@example.net", []string{"alice@example.com"}, spam)
	if !strings.HasPrefix(d[0], "250") {
		t.Fatalf("%q", d)
	}
	ents, err := e.quar.List(context.Background(), quarantine.Filter{})
	if err != nil || len(ents) != 1 || ents[0].Score != 9.5 || ents[0].QueueID != "4AbCdEfGh1" || len(ents[0].Symbols) != 2 {
		t.Fatalf("quarantine %+v %v", ents, err)
	}
	if n := len(files(t, filepath.Join(e.dir, "alice/Maildir/new"))); n != 0 {
		t.Errorf("INBOX has %d", n)
	}
	// Release: same pipeline, straight to INBOX.
	raw, _ := e.quar.Message(context.Background(), ents[0].ID)
	var rerr error
	e.srv.Deliverer().Deliver(context.Background(), &Delivery{
		From: ents[0].Sender, Data: raw, SessionID: "release", Release: true,
		Recipients: []Recipient{{Addr: ents[0].Recipient, User: e.users.users["alice@example.com"]}},
	}, func(_ int, err error) { rerr = err })
	if rerr != nil || len(files(t, filepath.Join(e.dir, "alice/Maildir/new"))) != 1 {
		t.Fatalf("release: %v", rerr)
	}
	// Duplicate Message-ID to the same user is suppressed (still 250).
	_, d = v.send("s@example.net", []string{"carol@example.com"}, testMsg)
	_, d2 := v.send("s@example.net", []string{"carol@example.com"}, testMsg)
	if !strings.HasPrefix(d[0], "250") || !strings.HasPrefix(d2[0], "250") {
		t.Fatalf("%q %q", d, d2)
	}
	if n := len(files(t, filepath.Join(e.dir, "carol/Maildir/new"))); n != 1 {
		t.Errorf("duplicate delivered: %d copies", n)
	}
}

// TestReplyBoundary: every error becomes a deliberate SMTPError; unknown errors are
// temporary and never leak their text.
func TestReplyBoundary(t *testing.T) {
	cases := []struct {
		err  error
		code int
		enh  smtp.EnhancedCode
	}{
		{fmt.Errorf("x: %w", directory.ErrNotFound), 550, smtp.EnhancedCode{5, 1, 1}},
		{directory.ErrDisabled, 550, smtp.EnhancedCode{5, 2, 1}},
		{directory.ErrUnavailable, 451, smtp.EnhancedCode{4, 3, 0}},
		{store.ErrUnavailable, 451, smtp.EnhancedCode{4, 3, 0}},
		{fmt.Errorf("w: %w", maildir.ErrQuota), 552, smtp.EnhancedCode{5, 2, 2}},
		{maildir.ErrNoSpace, 452, smtp.EnhancedCode{4, 3, 1}},
		{&RejectError{Reason: "no\r\nthanks"}, 550, smtp.EnhancedCode{5, 7, 1}},
		{ErrEmptyRecipient, 550, smtp.EnhancedCode{5, 1, 1}},
		{errors.New("secret internal path /etc/x"), 451, smtp.EnhancedCode{4, 3, 0}},
		{smtp.ErrDataTooLarge, 552, smtp.EnhancedCode{5, 3, 4}},
		{io.ErrUnexpectedEOF, 451, smtp.EnhancedCode{4, 3, 0}},
	}
	for _, c := range cases {
		r := replyFor("a@b", c.err, false)
		if r.Code != c.code || r.EnhancedCode != c.enh {
			t.Errorf("%v → %d %v, want %d %v", c.err, r.Code, r.EnhancedCode, c.code, c.enh)
		}
		if strings.Contains(r.Message, "secret") || strings.ContainsAny(r.Message, "\r\n") {
			t.Errorf("%v leaks or breaks the line: %q", c.err, r.Message)
		}
	}
	full := &os.PathError{Op: "write", Path: "/q/tmp/x.eml", Err: syscall.ENOSPC}
	if r := replyFor("a@b", quarantineErr(fmt.Errorf("quarantine: write message: %w", full)), false); r.Code != 452 || r.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Errorf("quarantine on a full disk → %d %v, want 452 4.3.1", r.Code, r.EnhancedCode)
	}
	if r := replyFor("a@b", quarantineErr(errors.New("index: database is locked")), false); r.Code != 451 {
		t.Errorf("quarantine index error → %d, want 451", r.Code)
	}
	if replyFor("a", nil, false) != nil {
		t.Error("nil error must stay nil")
	}
}

func TestQueueIDAndSpamHeaders(t *testing.T) {
	hdr := parseHeader(headerBlock([]byte(testMsg)))
	if id := postfixQueueID(hdr); id != "4AbCdEfGh1" {
		t.Errorf("queue id %q", id)
	}
	other := parseHeader([]byte("Received: from x by y with LMTP id abcdef; date\nReceived: by z (Postfix) with ESMTP id QQQQQQ\n"))
	if id := postfixQueueID(other); id != "" {
		t.Errorf("non-Postfix topmost Received gave %q", id)
	}
	si := parseSpam(parseHeader([]byte("X-Spam-Status: Yes, score=7.2 required=5.0 tests=A,B\n autolearn=no\n")))
	if !si.Flag || si.Score != 7.2 || len(si.Symbols) != 2 {
		t.Errorf("spam %+v", si)
	}
}

// TestSieveQuarantineAction: the vnd.dovetail.quarantine action from a real global
// script puts the message into the quarantine with its reason.
func TestSieveQuarantineAction(t *testing.T) {
	script := filepath.Join(t.TempDir(), "before.sieve")
	os.WriteFile(script, []byte(`require "vnd.dovetail.quarantine";
if header :is "X-Spam-Flag" "YES" { quarantine :reason "spam by sieve"; }`), 0o644)
	e := newEnv(t, func(o *Options) {
		o.Config.Sieve.Before = []string{script}
		o.Filter = NewSieveFilter(o.Config.Sieve, "+", nil, nil)
	})
	_, d := e.dial().send("s@example.net", []string{"alice@example.com"}, strings.Replace(testMsg, "Subject:", "X-Spam-Flag: YES\nSubject:", 1))
	if !strings.HasPrefix(d[0], "250") {
		t.Fatalf("%q", d)
	}
	ents, _ := e.quar.List(context.Background(), quarantine.Filter{})
	if len(ents) != 1 || ents[0].Reason != "spam by sieve" {
		t.Fatalf("quarantine %+v", ents)
	}
	if n := len(files(t, filepath.Join(e.dir, "alice/Maildir/new"))); n != 0 {
		t.Errorf("INBOX has %d", n)
	}
}

func counterOf(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Histogram != nil {
		return float64(m.Histogram.GetSampleCount())
	}
	return m.Counter.GetValue()
}

// TestMetricsLogsAndTrace: every recipient — delivered, quarantined, refused at
// RCPT, or failed in DATA — has one log line and its result in the metrics; the
// Received header names the LMTP client and, for one recipient, "for <rcpt>".
func TestMetricsLogsAndTrace(t *testing.T) {
	var logb testenv.LogBuffer
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *Options) {
		o.Config.QuarantineScore = 6
		o.Config.MaxMessageSize = 4096
		o.Registerer = reg
		o.Logger = slog.New(slog.NewTextHandler(&logb, nil))
	})
	v := e.dial()
	v.send("s@example.net", []string{"alice@example.com", "nobody@example.com"}, testMsg)
	v.send("s@example.net", []string{"carol@example.com"}, strings.Replace(testMsg, "Subject:", "X-Spam-Score: 9.5\nSubject:", 1))
	v.send("s@example.net", []string{"carol@example.com"}, testMsg+strings.Repeat(strings.Repeat("x", 99)+"\n", 80))
	m := e.srv.Deliverer().Metrics
	for result, want := range map[string]float64{"delivered": 1, "quarantined": 1, "rejected": 2} {
		if got := counterOf(t, m.Deliveries.WithLabelValues(result)); got != want {
			t.Errorf("deliveries{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := counterOf(t, m.Quarantined); got != 1 {
		t.Errorf("quarantined = %v", got)
	}
	if got := counterOf(t, m.Latency); got != 2 {
		t.Errorf("latency observations = %v, want 2", got)
	}
	if got := counterOf(t, m.Bytes); got < float64(2*len(testMsg)) {
		t.Errorf("bytes = %v", got)
	}
	logs := logb.String()
	for _, want := range []string{
		`msg=delivery`, `rcpt=alice@example.com`, `queue_id=4AbCdEfGh1`, `result=delivered`,
		`msg="rcpt refused"`, `rcpt=nobody@example.com`, `result=rejected`, `"550 5.1.1 User doesn't exist: nobody@example.com"`,
		`result=quarantined`, `"552 5.3.4`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if n := strings.Count(logs, "rcpt="); n != 4 {
		t.Errorf("%d log lines with a recipient, want 4:\n%s", n, logs)
	}
	fs := files(t, filepath.Join(e.dir, "alice/Maildir/new"))
	b, _ := os.ReadFile(fs[0])
	if !regexp.MustCompile(`Received: from client\.test \(\[127\.0\.0\.1\]\)\n\tby mx\.test \(dovetail\) with LMTP\n\tid \S+\n\t\(envelope-from <s@example\.net>\)\n\tfor <alice@example\.com>; `).Match(b) {
		t.Errorf("Received header:\n%s", b)
	}
}

// TestLaterStoreFailureAfterSavedCopy: once one copy is stored, a failing further
// fileinto does not tempfail the recipient (Postfix would retry and store the
// first copy twice) — Pigeonhole's saved_mail rule. Before any copy is stored the
// failure is a 451.
func TestLaterStoreFailureAfterSavedCopy(t *testing.T) {
	ff := &fakeFilter{acts: map[string][]Action{
		"alice": {{Type: ActKeep}, {Type: ActFileinto, Mailbox: "Broken", Create: true}},
		"carol": {{Type: ActFileinto, Mailbox: "Broken", Create: true}, {Type: ActKeep}},
	}}
	e := newEnv(t, func(o *Options) { o.Filter = ff })
	for _, u := range []string{"alice", "carol"} {
		os.MkdirAll(filepath.Join(e.dir, u, "Maildir"), 0o700)
		os.WriteFile(filepath.Join(e.dir, u, "Maildir", ".Broken"), []byte("not a folder"), 0o600)
	}
	_, d := e.dial().send("s@example.net", []string{"alice@example.com", "carol@example.com"}, testMsg)
	if len(d) != 2 || !strings.HasPrefix(d[0], "250") || !strings.HasPrefix(d[1], "451") {
		t.Fatalf("replies %q, want 250 for alice (INBOX saved first), 451 for carol", d)
	}
	if n := len(files(t, filepath.Join(e.dir, "alice/Maildir/new"))); n != 1 {
		t.Errorf("alice's INBOX has %d", n)
	}
}

// TestAlsoListen: one server on TCP and a unix socket at once; Shutdown ends both.
func TestAlsoListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	e := newEnv(t, func(o *Options) { o.Config.AlsoListen = config.Listener{Address: "unix:" + sock} })
	deadline := time.Now().Add(5 * time.Second)
	var c net.Conn
	for {
		var err error
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unix listener: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	v := &conv{t: t, c: c, r: bufio.NewReader(c)}
	v.reply()
	v.cmd("LHLO client.test")
	if _, d := v.send("s@example.net", []string{"alice@example.com"}, testMsg); len(d) != 1 || !strings.HasPrefix(d[0], "250") {
		t.Fatalf("over the unix socket: %q", d)
	}
	v.cmd("QUIT")
	c.Close()
	tcp := e.dial()
	if _, d := tcp.send("s@example.net", []string{"carol@example.com"}, testMsg); len(d) != 1 || !strings.HasPrefix(d[0], "250") {
		t.Fatalf("over TCP: %q", d)
	}
	tcp.cmd("QUIT")
	tcp.c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e.srv.Shutdown(ctx)
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("unix listener still accepting after Shutdown")
	}
}

// TestQuarantineHousekeeping: retention applies while lmtpd runs even when no new
// message is quarantined (at start and every housekeepEvery).
func TestQuarantineHousekeeping(t *testing.T) {
	q, err := quarantine.Open(quarantine.Config{Dir: t.TempDir(), Retention: config.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	newEnv(t, func(o *Options) { o.Quarantine, o.housekeepEvery = q, 20*time.Millisecond })
	id, err := q.Add(context.Background(), &quarantine.Entry{Recipient: "alice@example.com", Time: time.Now().Add(-2 * time.Hour)}, []byte("x\n"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := q.Get(context.Background(), id); errors.Is(err, quarantine.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired message still quarantined")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQuarantinedNotForwardedOrAnswered: when a script quarantines a message, the
// user's redirect and vacation do not run for it.
func TestQuarantinedNotForwardedOrAnswered(t *testing.T) {
	ff := &fakeFilter{acts: map[string][]Action{"alice": {
		{Type: ActQuarantine, Reason: "spam"},
		{Type: ActRedirect, Address: "elsewhere@example.org"},
		{Type: ActVacation, Reason: "away", Period: 24 * time.Hour},
	}}}
	e := newEnv(t, func(o *Options) { o.Filter = ff })
	if _, d := e.dial().send("sender@example.net", []string{"alice@example.com"}, testMsg); !strings.HasPrefix(d[0], "250") {
		t.Fatalf("%q", d)
	}
	if ents, _ := e.quar.List(context.Background(), quarantine.Filter{}); len(ents) != 1 {
		t.Fatalf("quarantine has %d", len(ents))
	}
	if len(e.sender.sent) != 0 {
		t.Errorf("sent for a quarantined message: %q", e.sender.sent)
	}
}

type eioWriter struct{}

func (eioWriter) Write(p []byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "/secret/Maildir/tmp/x", Err: syscall.EIO}
}

// TestInternalErrorsNeverLeak: an unexpected failure after DATA reaches the client
// as a deliberate 451 4.3.0 without internal text — never go-smtp's 554 with the
// error string.
func TestInternalErrorsNeverLeak(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Maildir = &maildir.Options{WrapWriter: func(io.Writer) io.Writer { return eioWriter{} }}
	})
	v := e.dial()
	_, d := v.send("s@example.net", []string{"alice@example.com"}, testMsg)
	if len(d) != 1 || d[0] != "451 4.3.0 <alice@example.com> Temporary internal error" {
		t.Fatalf("reply %q", d)
	}
	e2 := newEnv(t, func(o *Options) {
		o.Filter = &fakeFilter{err: &TempError{errors.New("redis at /secret/sock: timeout")}}
	})
	_, d = e2.dial().send("s@example.net", []string{"alice@example.com"}, testMsg)
	if len(d) != 1 || !strings.HasPrefix(d[0], "451 4.3.0") || strings.Contains(d[0], "secret") {
		t.Fatalf("reply %q", d)
	}
}

// TestFileintoOverlongFolderKeepsInInbox: a fileinto whose Maildir++ directory
// name would pass the file system's 255-byte name limit — a 255-byte name gets
// its leading dot, a name of 100 umlauts triples in modified UTF-7, and a
// script filing by a List-Id the sender chose can ask for either — is a failed
// fileinto, kept in INBOX as Pigeonhole does ("Mailbox name too long"). The
// mkdir's ENAMETOOLONG used to be a 451 on every retry, until Postfix bounced
// the message days later.
func TestFileintoOverlongFolderKeepsInInbox(t *testing.T) {
	for i, name := range []string{strings.Repeat("x", 255), "Lists." + strings.Repeat("ä", 100)} {
		ff := &fakeFilter{acts: map[string][]Action{"alice": {{Type: ActFileinto, Mailbox: name, Create: true}}}}
		e := newEnv(t, func(o *Options) { o.Filter = ff })
		_, d := e.dial().send("s@example.net", []string{"alice@example.com"}, testMsg)
		if len(d) != 1 || !strings.HasPrefix(d[0], "250") {
			t.Fatalf("%d: replies %q, want 250 (kept in INBOX)", i, d)
		}
		if n := len(files(t, filepath.Join(e.dir, "alice/Maildir/new"))); n != 1 {
			t.Errorf("%d: INBOX has %d", i, n)
		}
	}
}
