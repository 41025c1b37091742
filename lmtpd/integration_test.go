package lmtpd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/directory/ldap"
	"github.com/dovetail-mail/dovetail/internal/cli"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/lmtpd"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/dovetail-mail/dovetail/store/mem"
	"github.com/emersion/go-smtp"
)

// childEnv makes the test binary run a bare lmtpd (for the kill -9 test).
const childEnv = "DOVETAIL_LMTPD_TEST_CHILD"

type childConfig struct {
	Listen  string
	LDAPURL string
	BaseDN  string
}

// cliEnv makes the test binary run `dovetail ARGS...` (JSON list), e.g. the real
// milter for the GTUBE test, in a process of its own.
const cliEnv = "DOVETAIL_LMTPD_TEST_CLI"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
	if v := os.Getenv(cliEnv); v != "" {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			os.Exit(2)
		}
		os.Exit(cli.Main(args, os.Stdin, os.Stdout, os.Stderr))
	}
	testenv.Main(m)
}

func runChild(spec string) int {
	var c childConfig
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := ldapDir(c.LDAPURL, c.BaseDN, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := lmtpd.DefaultConfig()
	srv, err := lmtpd.New(lmtpd.Options{Config: cfg, Directory: dir, Store: mem.New(), Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ln, err := daemon.Listen(config.Listener{Address: c.Listen})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func ldapDir(url, base string, log *slog.Logger) (directory.Directory, error) {
	lc := ldap.DefaultConfig()
	lc.URIs = []string{url}
	lc.BaseDN = base
	return ldap.New(lc, log)
}

// world is slapd + Dovecot (IMAP, LDAP users) + lmtpd on a unix socket + Postfix.
type world struct {
	slapd  *testenv.SlapdServer
	dc     *testenv.DovecotServer
	pf     *testenv.PostfixServer
	quar   *quarantine.Store
	sock   string
	srv    *lmtpd.Server
	logBuf *testenv.LogBuffer
	sender *recSender
	tmp    string
}

func startWorld(t *testing.T, mut func(*lmtpd.Config), pfMut ...func(*testenv.PostfixOptions)) *world {
	t.Helper()
	w := &world{slapd: testenv.Slapd(t)}
	dir, err := ldapDir(w.slapd.URL, w.slapd.PeopleDN, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	w.dc = testenv.StartDovecot(t, testenv.DovecotOptions{LDAP: w.slapd})
	tmp, err := os.MkdirTemp("", "lmtpd-it")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(tmp, 0o755)
	t.Cleanup(func() { os.RemoveAll(tmp) })
	w.tmp, w.sender = tmp, &recSender{}
	w.quar, err = quarantine.Open(quarantine.Config{Dir: filepath.Join(tmp, "quarantine")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.quar.Close() })
	cfg := lmtpd.DefaultConfig()
	cfg.Hostname = "mx.example.com"
	cfg.QuarantineScore = 5
	if mut != nil {
		mut(&cfg)
	}
	w.logBuf = &testenv.LogBuffer{}
	log := slog.New(slog.NewTextHandler(w.logBuf, nil))
	w.srv, err = lmtpd.New(lmtpd.Options{
		Config: cfg, Directory: dir, Store: mem.New(), Quarantine: w.quar, Logger: log, Sender: w.sender,
		Filter: lmtpd.NewSieveFilter(cfg.Sieve, cfg.RecipientDelimiter, nil, log),
	})
	if err != nil {
		t.Fatal(err)
	}
	w.sock = filepath.Join(tmp, "lmtp.sock")
	ln, err := daemon.Listen(config.Listener{Address: "unix:" + w.sock, Mode: "0666"})
	if err != nil {
		t.Fatal(err)
	}
	go w.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		w.srv.Shutdown(ctx)
		if t.Failed() {
			t.Logf("lmtpd log:\n%s", w.logBuf.String())
		}
	})
	pfo := testenv.PostfixOptions{LMTP: "unix:" + w.sock}
	for _, f := range pfMut {
		f(&pfo)
	}
	w.pf = testenv.StartPostfix(t, pfo)
	return w
}

// addUser creates a fresh LDAP user for one test (the slapd is shared by the
// binary, so tests never count messages in each other's mailboxes).
func (w *world) addUser(t *testing.T, cn string) {
	t.Helper()
	w.slapd.AddUser(t, testenv.LDAPUser{CN: cn, Mail: cn + "@example.com", Password: cn + "pw"})
}

func swaks(t *testing.T, w *world, to, subject string, extra ...string) {
	t.Helper()
	args := append([]string{"--to", to, "--from", "sender@example.net", "--helo", "client.example.net",
		"--header", "Subject: " + subject}, extra...)
	out, code := testenv.Swaks(t, w.pf.SMTPAddr, args...)
	if code != 0 {
		t.Fatalf("swaks to %s: exit %d\n%s", to, code, out)
	}
}

func hasFlag(m testenv.IMAPMessage, f string) bool {
	for _, x := range m.Flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// TestPostfixLDAPDovecot: real Postfix → lmtpd (users in real slapd) → Maildir, read
// back by real Dovecot over IMAP: INBOX, a Sieve-filed folder with flags, +detail.
func TestPostfixLDAPDovecot(t *testing.T) {
	w := startWorld(t, nil)
	w.addUser(t, "pdalice")
	w.addUser(t, "pdcarol")
	w.dc.SetSieve(t, "pdcarol", `require ["fileinto", "imap4flags", "mailbox"];
if header :contains "subject" "[lists]" {
  fileinto :create :flags ["\\Flagged", "$Listmail"] "Lists";
  stop;
}
`)
	swaks(t, w, "pdalice@example.com", "plain hello")
	swaks(t, w, "pdcarol@example.com", "[lists] weekly digest")
	swaks(t, w, "pdalice+news@example.com", "detail address")
	w.pf.WaitQueueEmpty(t, 20*time.Second)

	inbox := w.dc.WaitMessages(t, "pdalice", "pdalicepw", "INBOX", 2, 10*time.Second)
	var subjects []string
	for _, m := range inbox {
		subjects = append(subjects, m.Header)
	}
	all := strings.Join(subjects, "\n")
	for _, want := range []string{"Subject: plain hello", "Subject: detail address", "Delivered-To: pdalice+news@example.com", "Return-Path: <sender@example.net>"} {
		if !strings.Contains(all, want) {
			t.Errorf("pdalice's INBOX lacks %q:\n%s", want, all)
		}
	}
	lists := w.dc.WaitMessages(t, "pdcarol", "pdcarolpw", "Lists", 1, 10*time.Second)
	if !hasFlag(lists[0], `\Flagged`) || !hasFlag(lists[0], "$Listmail") {
		t.Errorf("Lists message flags = %v, want \\Flagged and $Listmail", lists[0].Flags)
	}
	if n := len(w.dc.Messages(t, "pdcarol", "pdcarolpw", "INBOX")); n != 0 {
		t.Errorf("pdcarol's INBOX has %d messages, want 0 (filed by Sieve)", n)
	}
	if !strings.Contains(w.logBuf.String(), "queue_id=") || strings.Contains(w.logBuf.String(), `queue_id=""`) {
		t.Errorf("log lines lack the Postfix queue id:\n%s", w.logBuf.String())
	}
	// Unknown and disabled users are refused at RCPT: Postfix bounces them.
	swaks(t, w, "nobody@example.com", "to nobody")
	w.pf.WaitLog(t, "550 5.1.1", 10*time.Second)
	swaks(t, w, "bob@example.com", "to bob")
	w.pf.WaitLog(t, "550 5.2.1", 10*time.Second)
}

// TestSpamQuarantineRelease: a message the milter marked as spam goes to the
// quarantine, shows in the list, and after release is in INBOX over IMAP.
func TestSpamQuarantineRelease(t *testing.T) {
	w := startWorld(t, nil)
	w.addUser(t, "qrcarol")
	swaks(t, w, "qrcarol@example.com", "cheap pills", "--header", "X-Spam-Flag: YES",
		"--header", "X-Spam-Score: 12.5", "--header", "X-Spam-Status: Yes, score=12.5 required=5.0 tests=GTUBE")
	w.pf.WaitQueueEmpty(t, 20*time.Second)
	ents, err := w.quar.List(context.Background(), quarantine.Filter{User: "qrcarol"})
	if err != nil || len(ents) != 1 {
		t.Fatalf("quarantine list: %v %v\n%s", ents, err, w.logBuf)
	}
	if ents[0].Score != 12.5 || ents[0].Recipient != "qrcarol@example.com" || ents[0].Subject != "cheap pills" || ents[0].QueueID == "" {
		t.Errorf("entry %+v", ents[0])
	}
	if n := len(w.dc.Messages(t, "qrcarol", "qrcarolpw", "INBOX")); n != 0 {
		t.Fatalf("spam reached INBOX")
	}
	releaseViaCLI(t, w, ents[0].ID)
	msgs := w.dc.WaitMessages(t, "qrcarol", "qrcarolpw", "INBOX", 1, 10*time.Second)
	if !strings.Contains(msgs[0].Header, "Subject: cheap pills") {
		t.Errorf("released message: %s", msgs[0].Header)
	}
	if _, err := w.quar.Get(context.Background(), ents[0].ID); err == nil {
		t.Error("released message still in the quarantine")
	}
}

// TestGTUBEThroughMilter: GTUBE through the REAL dovetail milter (its own process,
// started via the CLI) in Postfix; lmtpd only reads the X-Spam-* headers it added
// and quarantines the message.
func TestGTUBEThroughMilter(t *testing.T) {
	testenv.Need(t, "swaks")
	port := testenv.FreePort(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "milter.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`data_dir: %s
daemons: [milter]
metrics: {listen: ""}
milter:
  listen: {address: "127.0.0.1:%d"}
spam:
  actions: {reject: 100000, add_header: 6}
  bayes: {enabled: false}
`, dir, port)), 0o600)
	args, _ := json.Marshal([]string{"-c", cfgPath, "milter"})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), cliEnv+"="+string(args))
	var logb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("milter log:\n%s", logb.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("milter did not listen on %d:\n%s", port, logb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	w := startWorld(t, nil, func(o *testenv.PostfixOptions) { o.Milter = fmt.Sprintf("inet:127.0.0.1:%d", port) })
	w.addUser(t, "gtcarol")
	swaks(t, w, "gtcarol@example.com", "gtube test", "--body",
		"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")
	w.pf.WaitQueueEmpty(t, 20*time.Second)
	ents, err := w.quar.List(context.Background(), quarantine.Filter{User: "gtcarol@example.com"})
	if err != nil || len(ents) != 1 {
		t.Fatalf("quarantine: %v %v\nlmtpd log:\n%s", ents, err, w.logBuf)
	}
	if ents[0].Score < 100 || !strings.Contains(strings.Join(ents[0].Symbols, ","), "GTUBE") {
		t.Errorf("entry %+v: want the milter's GTUBE score and symbol", ents[0])
	}
	if n := len(w.dc.Messages(t, "gtcarol", "gtcarolpw", "INBOX")); n != 0 {
		t.Errorf("GTUBE reached INBOX (%d)", n)
	}
}

// TestRedirectThroughPostfix: a Sieve redirect is submitted to the real Postfix by
// SMTP and comes back through lmtpd into the target's INBOX.
func TestRedirectThroughPostfix(t *testing.T) {
	w := startWorld(t, nil)
	w.addUser(t, "rdfrom")
	w.addUser(t, "rdto")
	w.sender.mu.Lock()
	w.sender.via = &lmtpd.SMTPSender{Addr: w.pf.SMTPAddr, Timeout: 10 * time.Second}
	w.sender.mu.Unlock()
	w.dc.SetSieve(t, "rdfrom", `redirect "rdto@example.com";`)
	swaks(t, w, "rdfrom@example.com", "please forward")
	msgs := w.dc.WaitMessages(t, "rdto", "rdtopw", "INBOX", 1, 20*time.Second)
	if !strings.Contains(msgs[0].Header, "Subject: please forward") {
		t.Errorf("redirected message: %s", msgs[0].Header)
	}
	if n := len(w.dc.Messages(t, "rdfrom", "rdfrompw", "INBOX")); n != 0 {
		t.Errorf("redirect without :copy kept a copy (%d)", n)
	}
}

// TestVacationAndQuota: vacation answers once and never to a list message;
// an over-quota user gets 552 5.2.2 (Postfix bounces).
func TestVacationAndQuota(t *testing.T) {
	w := startWorld(t, func(c *lmtpd.Config) { c.DefaultQuota = 8 << 10 })
	w.addUser(t, "vccarol")
	w.addUser(t, "vqalice")
	w.dc.SetSieve(t, "vccarol", `require ["vacation"];
vacation :days 1 :subject "Away" "I am on holiday.";
`)
	swaks(t, w, "vccarol@example.com", "first")
	swaks(t, w, "vccarol@example.com", "second")
	swaks(t, w, "vccarol@example.com", "list mail", "--header", "List-Id: <dev.lists.example.org>", "--from", "other@example.net")
	w.pf.WaitQueueEmpty(t, 20*time.Second)
	w.dc.WaitMessages(t, "vccarol", "vccarolpw", "INBOX", 3, 10*time.Second)
	sent := w.sender.all()
	if len(sent) != 1 || !strings.Contains(sent[0], "to=[sender@example.net]") || !strings.Contains(sent[0], "Subject: Away") {
		t.Fatalf("vacation replies: %q", sent)
	}
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 200)
	out, code := testenv.Swaks(t, w.pf.SMTPAddr, "--to", "vqalice@example.com", "--from", "sender@example.net",
		"--helo", "client.example.net", "--body", big)
	if code != 0 {
		t.Fatalf("swaks: %d %s", code, out)
	}
	w.pf.WaitLog(t, "552 5.2.2", 15*time.Second)
}

// TestVacationThroughSendmail: the vacation reply leaves through Postfix's real
// sendmail binary (postdrop → pickup) with the null envelope sender, comes back
// through lmtpd into the sender's INBOX, and is sent once per period.
func TestVacationThroughSendmail(t *testing.T) {
	w := startWorld(t, nil)
	w.addUser(t, "vsalice")
	w.addUser(t, "vsbob")
	w.sender.mu.Lock()
	w.sender.via = &lmtpd.SendmailSender{Path: "/usr/sbin/sendmail", Args: []string{"-C", filepath.Join(w.pf.Dir, "etc")}, Timeout: 20 * time.Second}
	w.sender.mu.Unlock()
	w.dc.SetSieve(t, "vsalice", `require ["vacation"];
vacation :days 1 :subject "Out of office" "Back on Monday.";
`)
	swaks(t, w, "vsalice@example.com", "meeting?", "--from", "vsbob@example.com")
	replies := w.dc.WaitMessages(t, "vsbob", "vsbobpw", "INBOX", 1, 30*time.Second)
	h := replies[0].Header
	for _, want := range []string{"Return-Path: <>", "Subject: Out of office", "Auto-Submitted: auto-replied", "To: <vsbob@example.com>"} {
		if !strings.Contains(h, want) {
			t.Errorf("vacation reply lacks %q:\n%s", want, h)
		}
	}
	swaks(t, w, "vsalice@example.com", "meeting, again?", "--from", "vsbob@example.com")
	w.dc.WaitMessages(t, "vsalice", "vsalicepw", "INBOX", 2, 20*time.Second)
	w.pf.WaitQueueEmpty(t, 20*time.Second)
	if n := len(w.dc.Messages(t, "vsbob", "vsbobpw", "INBOX")); n != 1 {
		t.Errorf("vsbob got %d vacation replies, want 1", n)
	}
}

type recSender struct {
	mu   sync.Mutex
	sent []string
	via  lmtpd.Sender // when set, really submit (to the test's Postfix)
}

func (r *recSender) Send(ctx context.Context, from string, rcpts []string, msg []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.via != nil {
		r.sent = append(r.sent, fmt.Sprintf("from=<%s> to=%v (via SMTP)", from, rcpts))
		return r.via.Send(ctx, from, rcpts, msg)
	}
	r.sent = append(r.sent, fmt.Sprintf("from=<%s> to=%v\n%s", from, rcpts, msg))
	return nil
}

func (r *recSender) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}

// releaseViaCLI runs `dovetail quarantine list --json` and `release ID` against a
// config pointing at the same LDAP directory and quarantine.
func releaseViaCLI(t *testing.T, w *world, id string) {
	t.Helper()
	cfgPath := filepath.Join(w.tmp, "dovetail.yaml")
	yaml := fmt.Sprintf(`data_dir: %s
daemons: [lmtpd]
directory:
  backend: ldap
  ldap:
    uris: [%q]
    base_dn: %q
lmtpd:
  hostname: mx.example.com
quarantine:
  dir: %s
`, filepath.Join(w.tmp, "data"), w.slapd.URL, w.slapd.PeopleDN, filepath.Join(w.tmp, "quarantine"))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := cli.Main(append([]string{"-c", cfgPath}, args...), strings.NewReader(""), &out, &errb)
		return out.String() + errb.String(), code
	}
	out, code := run("quarantine", "list", "--json")
	var ents []quarantine.Entry
	if code != 0 || json.Unmarshal([]byte(out), &ents) != nil || len(ents) != 1 || ents[0].ID != id {
		t.Fatalf("quarantine list --json: exit %d\n%s", code, out)
	}
	out, code = run("quarantine", "list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "cheap pills") {
		t.Fatalf("quarantine list: exit %d\n%s", code, out)
	}
	if out, code = run("quarantine", "show", "nonexistent-id"); code != 3 {
		t.Errorf("show unknown id: exit %d, want 3\n%s", code, out)
	}
	if out, code = run("quarantine", "release", id); code != 0 {
		t.Fatalf("quarantine release: exit %d\n%s", code, out)
	}
}

// startChild runs a subprocess lmtpd listening on spec.Listen.
func startChild(t *testing.T, spec childConfig) *exec.Cmd {
	t.Helper()
	b, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", strings.TrimPrefix(spec.Listen, "unix:")); err == nil {
			c.Close()
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatal("child lmtpd did not start")
	return nil
}

// TestKill9NothingLost: 500 messages through Postfix while lmtpd is SIGKILLed twice;
// every message ends up in a Maildir (duplicates allowed, losses not).
func TestKill9NothingLost(t *testing.T) {
	slapd := testenv.Slapd(t)
	tmp, _ := os.MkdirTemp("", "lmtpd-kill")
	os.Chmod(tmp, 0o755)
	t.Cleanup(func() { os.RemoveAll(tmp) })
	spec := childConfig{Listen: "unix:" + filepath.Join(tmp, "lmtp.sock"), LDAPURL: slapd.URL, BaseDN: slapd.PeopleDN}
	child := startChild(t, spec)
	os.Chmod(strings.TrimPrefix(spec.Listen, "unix:"), 0o666)
	defer func() {
		if child != nil {
			child.Process.Kill()
			child.Wait()
		}
	}()
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{LMTP: spec.Listen, Extra: map[string]string{
		"lmtp_destination_recipient_limit": "1", "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
		"queue_run_delay": "1s",
	}})
	slapd.AddUser(t, testenv.LDAPUser{CN: "k9alice", Mail: "k9alice@example.com"})
	inbox := filepath.Join(slapd.HomeDir, "k9alice", "Maildir")
	before := countMessages(t, inbox, "kill9-")
	const N = 500
	conn, err := net.Dial("tcp", pf.SMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	killed := 0
	for i := 0; i < N; i++ {
		msg := fmt.Sprintf("From: s@example.net\r\nTo: k9alice@example.com\r\nSubject: kill9-%d\r\nMessage-ID: <kill9-%d-%d@example.net>\r\n\r\nbody %d\r\n", i, i, time.Now().UnixNano(), i)
		if err := c.SendMail("s@example.net", []string{"k9alice@example.com"}, strings.NewReader(msg)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i == 150 || i == 350 {
			time.Sleep(50 * time.Millisecond) // let deliveries be in flight
			child.Process.Signal(syscall.SIGKILL)
			child.Wait()
			killed++
			child = startChild(t, spec)
			os.Chmod(strings.TrimPrefix(spec.Listen, "unix:"), 0o666)
		}
	}
	c.Quit()
	deadline := time.Now().Add(90 * time.Second)
	for {
		pf.Flush(t)
		if pf.QueueEmpty(t) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty: %v", pf.QueueFiles(t))
		}
		time.Sleep(500 * time.Millisecond)
	}
	got := countMessages(t, inbox, "kill9-") - before
	if got < N {
		t.Fatalf("%d of %d messages in the Maildir after %d kills", got, N, killed)
	}
	if tmpFiles, _ := os.ReadDir(filepath.Join(inbox, "tmp")); len(tmpFiles) != 0 {
		t.Errorf("%d stale files in tmp/", len(tmpFiles))
	}
	t.Logf("%d distinct messages delivered, %d kills", got, killed)
}

// countMessages counts distinct subjects starting with prefix in new/ and cur/.
func countMessages(t *testing.T, maildir, prefix string) int {
	t.Helper()
	seen := map[string]bool{}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(maildir, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(maildir, sub, e.Name()))
			if err != nil {
				continue
			}
			if i := bytes.Index(b, []byte("Subject: "+prefix)); i >= 0 {
				line := b[i:]
				if j := bytes.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				seen[string(line)] = true
			}
		}
	}
	return len(seen)
}
