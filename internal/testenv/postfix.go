package testenv

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PostfixMaster is Debian's path of Postfix's master(8).
const PostfixMaster = "/usr/lib/postfix/sbin/master"

// PostfixOptions configure a private Postfix. Targets use numeric loopback
// addresses ("inet:127.0.0.1:PORT"); the harness does no DNS.
type PostfixOptions struct {
	// Targets may be given as "inet:127.0.0.1:PORT" or "127.0.0.1:PORT".
	//
	// SASLPath, e.g. "inet:127.0.0.1:PORT" (Dovecot auth protocol): sets
	// smtpd_sasl_auth_enable=yes, smtpd_sasl_type=dovecot. The endpoint must be up
	// BEFORE StartPostfix: without it every smtpd dies with "no SASL authentication
	// mechanisms" (StartPostfix checks that it accepts connections).
	SASLPath string
	// Milter, e.g. "inet:127.0.0.1:PORT": smtpd_milters, milter_default_action=tempfail,
	// milter_protocol=6.
	Milter string
	// PolicyService, e.g. "inet:127.0.0.1:PORT": check_policy_service in
	// smtpd_recipient_restrictions.
	PolicyService string
	// LMTP, e.g. "inet:127.0.0.1:PORT": virtual_transport = lmtp:inet:...
	// Without it mail for VirtualDomains is discarded (virtual_transport = discard:);
	// set Extra["virtual_transport"] to e.g. "error:" or "hold" for other behaviour.
	LMTP string
	// VirtualDomains are virtual_mailbox_domains (default example.com); every
	// recipient in them is accepted (virtual_mailbox_maps is empty).
	VirtualDomains []string
	// RecipientRestrictions replaces the whole smtpd_recipient_restrictions list when
	// set. Default: check_policy_service <PolicyService> when given, else empty.
	RecipientRestrictions []string
	// Extra main.cf settings; they override the harness's.
	Extra map[string]string
}

// PostfixServer is a private Postfix (master + children) with its own config and
// queue dirs, smtpd on 127.0.0.1.
type PostfixServer struct {
	SMTPAddr string // 127.0.0.1:PORT
	Port     int
	Dir      string // etc/ (main.cf, master.cf), spool/, data/, maillog

	p *proc
}

// StartPostfix starts a private Postfix for this test; it is stopped (and its dir
// removed) by t.Cleanup. Start the SASL / milter / policy / LMTP endpoints first.
func StartPostfix(t testing.TB, o PostfixOptions) *PostfixServer {
	t.Helper()
	Need(t, PostfixMaster, "postqueue", "postconf")
	for _, name := range []string{"postfix", "postdrop"} {
		if _, err := user.LookupGroup(name); err != nil {
			SkipOrFail(t, "group %s missing (postfix package not installed?)", name)
		}
	}
	o.SASLPath, o.Milter = inetTarget(o.SASLPath), inetTarget(o.Milter)
	o.PolicyService, o.LMTP = inetTarget(o.PolicyService), inetTarget(o.LMTP)
	if o.SASLPath != "" {
		if err := dialTarget(o.SASLPath); err != nil {
			t.Fatalf("testenv: StartPostfix: SASL endpoint %s must be running before Postfix starts "+
				"(else every smtpd dies with \"no SASL authentication mechanisms\"): %v", o.SASLPath, err)
		}
	}
	start := time.Now()
	dir, err := tempDir("pf")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p := &PostfixServer{Dir: dir}
	t.Cleanup(func() {
		p.p.stop()
		if t.Failed() {
			t.Logf("testenv: postfix maillog (%s):\n%s", p.logPath(), tail(p.logPath(), 40))
		}
		removeDir(t, dir)
	})
	if err := p.setup(); err != nil {
		t.Fatalf("testenv: postfix: %v", err)
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		p.Port = port
		p.SMTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := p.writeConfig(o); err != nil {
			t.Fatalf("testenv: postfix: %v", err)
		}
		err = p.start()
		if err == nil {
			break
		}
		if attempt < 5 && addrInUse(err.Error()) {
			continue
		}
		t.Fatalf("testenv: postfix: %v", err)
	}
	t.Logf("testenv: postfix smtpd %s started in %s (dir %s)", p.SMTPAddr, time.Since(start).Round(time.Millisecond), dir)
	return p
}

// inetTarget turns a bare "127.0.0.1:PORT" into "inet:127.0.0.1:PORT"; "inet:...",
// "unix:..." and paths without a colon stay as they are.
func inetTarget(s string) string {
	if s == "" || strings.HasPrefix(s, "inet:") || strings.HasPrefix(s, "unix:") || !strings.Contains(s, ":") {
		return s
	}
	return "inet:" + s
}

// dialTarget checks that an "inet:host:port" endpoint accepts connections; other
// forms (unix socket paths, relative to the queue directory) are not checked.
func dialTarget(target string) error {
	addr, ok := strings.CutPrefix(target, "inet:")
	if !ok {
		return nil
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func (p *PostfixServer) logPath() string { return filepath.Join(p.Dir, "maillog") }

// setup creates the directory layout with the owners/modes `postfix set-permissions`
// would give (done by hand: set-permissions walks all of postfix-files, seconds).
func (p *PostfixServer) setup() error {
	pfUID, pfGID, err := lookupIDs("postfix", "postfix")
	if err != nil {
		return err
	}
	_, postdrop, err := lookupIDs("", "postdrop")
	if err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(p.Dir, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(p.Dir, "spool"), 0o755); err != nil {
		return err
	}
	// master.lock etc.: data_directory MUST be owned by postfix.
	if err := mkdirOwned(filepath.Join(p.Dir, "data"), pfUID, pfGID, 0o700); err != nil {
		return err
	}
	q := filepath.Join(p.Dir, "spool")
	for _, d := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		if err := mkdirOwned(filepath.Join(q, d), pfUID, 0, 0o700); err != nil {
			return err
		}
	}
	if err := mkdirOwned(filepath.Join(q, "maildrop"), pfUID, postdrop, 0o730); err != nil {
		return err
	}
	if err := mkdirOwned(filepath.Join(q, "public"), pfUID, postdrop, 0o710); err != nil {
		return err
	}
	if err := mkdirOwned(filepath.Join(q, "pid"), 0, 0, 0o755); err != nil {
		return err
	}
	return writeFile(p.logPath(), "", 0o644)
}

func lookupIDs(userName, groupName string) (uid, gid int, err error) {
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			return 0, 0, err
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		return 0, 0, err
	}
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid, nil
}

// mainCF returns the main.cf settings for o.
func (p *PostfixServer) mainCF(o PostfixOptions) map[string]string {
	d := p.Dir
	cf := map[string]string{
		"compatibility_level": "3.6",
		"config_directory":    d + "/etc",
		"queue_directory":     d + "/spool",
		"data_directory":      d + "/data",
		// no syslog: postlogd writes maillog_file (prefix must allow the temp dir)
		"maillog_file":          d + "/maillog",
		"maillog_file_prefixes": d + ", /dev/stdout",
		"myhostname":            "mail.example.test",
		"mydomain":              "example.test",
		"myorigin":              "$myhostname",
		"mydestination":         "",
		"inet_interfaces":       "loopback-only",
		"inet_protocols":        "ipv4",
		"mynetworks":            "127.0.0.0/8",
		// no DNS anywhere (resolv.conf may point to an unreachable resolver)
		"smtp_dns_support_level": "disabled",
		"smtp_host_lookup":       "native",
		"lmtp_host_lookup":       "native",
		"smtpd_peername_lookup":  "no",
		"alias_maps":             "",
		"alias_database":         "",
		"local_recipient_maps":   "",
		"biff":                   "no",
		// no TLS
		"smtpd_tls_security_level": "none",
		"smtp_tls_security_level":  "none",
		"lmtp_tls_security_level":  "none",
		"smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
		"virtual_mailbox_domains":  "example.com",
		"virtual_transport":        "discard:",
		// fast and deterministic
		"in_flow_delay":          "0s",
		"queue_run_delay":        "5s",
		"minimal_backoff_time":   "5s",
		"maximal_backoff_time":   "10s",
		"smtputf8_enable":        "no",
		"non_smtpd_milters":      "",
		"smtpd_error_sleep_time": "0s",
	}
	if o.SASLPath != "" {
		cf["smtpd_sasl_auth_enable"] = "yes"
		cf["smtpd_sasl_type"] = "dovecot"
		cf["smtpd_sasl_path"] = o.SASLPath
	}
	if o.Milter != "" {
		cf["smtpd_milters"] = o.Milter
		cf["milter_default_action"] = "tempfail"
		cf["milter_protocol"] = "6"
	}
	if o.LMTP != "" {
		cf["virtual_transport"] = "lmtp:" + o.LMTP
	}
	if len(o.VirtualDomains) > 0 {
		cf["virtual_mailbox_domains"] = strings.Join(o.VirtualDomains, ", ")
	}
	switch {
	case o.RecipientRestrictions != nil:
		cf["smtpd_recipient_restrictions"] = strings.Join(o.RecipientRestrictions, ", ")
	case o.PolicyService != "":
		cf["smtpd_recipient_restrictions"] = "check_policy_service " + o.PolicyService
	}
	for k, v := range o.Extra {
		cf[k] = v
	}
	return cf
}

// master.cf: chroot column "n" everywhere (an empty private chroot lacks
// /etc/services, resolv.conf...), smtpd on a loopback port, postlog kept (maillog_file).
const masterCF = `# service type private unpriv chroot wakeup maxproc command
127.0.0.1:%d  inet  n  -  n  -  -  smtpd
pickup     unix  n  -  n  60    1  pickup
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
tlsmgr     unix  -  -  n  1000? 1  tlsmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
verify     unix  -  -  n  -     1  verify
flush      unix  n  -  n  1000? 0  flush
proxymap   unix  -  -  n  -     -  proxymap
proxywrite unix  -  -  n  -     1  proxymap
smtp       unix  -  -  n  -     -  smtp
relay      unix  -  -  n  -     -  smtp
showq      unix  n  -  n  -     -  showq
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
discard    unix  -  -  n  -     -  discard
local      unix  -  n  n  -     -  local
virtual    unix  -  n  n  -     -  virtual
lmtp       unix  -  -  n  -     -  lmtp
anvil      unix  -  -  n  -     1  anvil
scache     unix  -  -  n  -     1  scache
postlog    unix-dgram n - n -   1  postlogd
`

func (p *PostfixServer) writeConfig(o PostfixOptions) error {
	cf := p.mainCF(o)
	keys := make([]string, 0, len(cf))
	for k := range cf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# written by internal/testenv\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, cf[k])
	}
	etc := filepath.Join(p.Dir, "etc")
	if err := writeFile(filepath.Join(etc, "main.cf"), b.String(), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(etc, "master.cf"), fmt.Sprintf(masterCF, p.Port), 0o644); err != nil {
		return err
	}
	return p.backdate()
}

// backdate sets main.cf/master.cf mtimes a minute back: Postfix waits until a
// freshly written config file is ~1-2 s old before it trusts it (pitfall 4).
func (p *PostfixServer) backdate() error {
	old := time.Now().Add(-time.Minute)
	for _, f := range []string{"main.cf", "master.cf"} {
		if err := os.Chtimes(filepath.Join(p.Dir, "etc", f), old, old); err != nil {
			return err
		}
	}
	return nil
}

// start runs master(8) in the foreground (our child; it setsid()s and closes its
// stdio but does not fork away). Ready when the smtpd port listens: probing by
// connecting would spawn an smtpd that talks to the milter and SASL endpoints.
func (p *PostfixServer) start() error {
	pr, err := startProc("postfix master", filepath.Join(p.Dir, "master.out"), PostfixMaster, "-c", filepath.Join(p.Dir, "etc"))
	if err != nil {
		return err
	}
	pr.log = p.logPath()
	if err := pr.waitReady(pr.listenReady(p.Port)); err != nil {
		pr.stop()
		// master's own fatal "bind ...: Address already in use" goes nowhere (postlogd
		// is not up yet and master has closed its stdio): look at the port instead.
		if !portFree(p.Port) {
			err = fmt.Errorf("%w\nport %d: Address already in use (held by another process)", err, p.Port)
		}
		if out := tail(filepath.Join(p.Dir, "master.out"), 10); strings.TrimSpace(out) != "" {
			err = fmt.Errorf("%w\nmaster stdout/stderr:\n%s", err, out)
		}
		return err
	}
	p.p = pr
	return nil
}

// Stop stops Postfix (SIGTERM to master, which stops its children). Dir and port are
// kept for Start.
func (p *PostfixServer) Stop(t testing.TB) {
	t.Helper()
	p.p.stop()
}

// Start starts a stopped Postfix again with the same config and queue.
func (p *PostfixServer) Start(t testing.TB) {
	t.Helper()
	if p.p != nil && !p.p.exited() {
		return
	}
	if err := p.start(); err != nil {
		t.Fatalf("testenv: restarting postfix: %v", err)
	}
}

// Reconfigure sets main.cf parameters and restarts Postfix (a SIGHUP reload reaches
// idle smtpd processes only lazily, so the next session could still use the old config).
func (p *PostfixServer) Reconfigure(t testing.TB, settings map[string]string) {
	t.Helper()
	args := []string{"-c", filepath.Join(p.Dir, "etc"), "-e"}
	for k, v := range settings {
		args = append(args, k+"="+v)
	}
	if _, err := runCmd(bin(t, "postconf"), args...); err != nil {
		t.Fatalf("testenv: postconf: %v", err)
	}
	if err := p.backdate(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p.Stop(t)
	p.Start(t)
}

// Log returns the maillog contents.
func (p *PostfixServer) Log() string {
	b, _ := os.ReadFile(p.logPath())
	return string(b)
}

// WaitLog polls the maillog until it contains substr; it fails the test (with the
// log tail) after timeout.
func (p *PostfixServer) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Log(), substr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %q not in the postfix maillog after %s (maillog tail is logged at cleanup)", substr, timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Flush asks the queue manager to retry deferred mail now (postqueue -c DIR -f).
func (p *PostfixServer) Flush(t testing.TB) {
	t.Helper()
	if _, err := runCmd(bin(t, "postqueue"), "-c", filepath.Join(p.Dir, "etc"), "-f"); err != nil {
		t.Fatalf("testenv: postqueue -f: %v", err)
	}
}

// queueDirs hold queue files that are not yet delivered.
var queueDirs = []string{"maildrop", "incoming", "active", "deferred", "hold"}

// QueueFiles returns the queue IDs (file names) in the maildrop, incoming, active,
// deferred and hold queues.
func (p *PostfixServer) QueueFiles(t testing.TB) []string {
	t.Helper()
	var ids []string
	for _, q := range queueDirs {
		root := filepath.Join(p.Dir, "spool", q)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !d.IsDir() {
				ids = append(ids, q+"/"+d.Name())
			}
			return nil
		})
		if err != nil {
			t.Fatalf("testenv: reading queue: %v", err)
		}
	}
	return ids
}

// QueueEmpty reports whether no message is waiting in the queue.
func (p *PostfixServer) QueueEmpty(t testing.TB) bool {
	t.Helper()
	return len(p.QueueFiles(t)) == 0
}

// WaitQueueEmpty polls until the queue is empty; fails after timeout.
func (p *PostfixServer) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		files := p.QueueFiles(t)
		if len(files) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: postfix queue not empty after %s: %v (maillog tail is logged at cleanup)", timeout, files)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Swaks runs swaks against addr ("127.0.0.1:PORT") with the extra args (e.g.
// "--from", "a@example.org", "--to", "alice@example.com", "--auth", "PLAIN", ...)
// and returns the combined output and exit code (0 = accepted; swaks uses 23-29
// for rejections at the various SMTP stages). --helo test.example and --timeout 15
// are added unless given.
func Swaks(t testing.TB, addr string, args ...string) (out string, code int) {
	t.Helper()
	Need(t, "swaks")
	full := []string{"--server", addr}
	if !hasFlag(args, "--helo", "--ehlo", "--lhlo", "-h") {
		full = append(full, "--helo", "test.example")
	}
	if !hasFlag(args, "--timeout") {
		full = append(full, "--timeout", "15")
	}
	full = append(full, args...)
	cmd := exec.Command(bin(t, "swaks"), full...)
	cmd.Dir = "/"
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("testenv: swaks: %v", err)
	}
	return string(b), code
}

func hasFlag(args []string, flags ...string) bool {
	for _, a := range args {
		for _, f := range flags {
			if a == f || strings.HasPrefix(a, f+"=") {
				return true
			}
		}
	}
	return false
}
