package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// DovecotUser is a passwd-file user of a private Dovecot. Mail processes run as
// MailUID/MailGID; the maildir is <Home>/Maildir.
type DovecotUser struct {
	Name     string // login name; "alice@example.com" logs in (and gets LMTP mail) as alice
	Password string // plain (stored {PLAIN}) or a "{SCHEME}..." hash as given
	Home     string // default <Dir>/home/<Name>, created owned by MailUID/MailGID
}

// DovecotOptions configure a private Dovecot. IMAP is always on.
type DovecotOptions struct {
	// Users default to the seed users alice/alicepw, bob/bobpw, carol/carolpw.
	Users []DovecotUser
	LMTP  bool // LMTP on 127.0.0.1 (LMTPAddr)
	Auth  bool // Dovecot auth protocol on TCP (AuthAddr): Postfix smtpd_sasl_path = inet:AuthAddr
	Sieve bool // Pigeonhole in LMTP: per-user script ~/.dovecot.sieve (see SetSieve)
	// LDAP, when set, replaces the passwd-file (Users is then ignored): passdb and
	// userdb are that slapd's ou=people, filter (&(|(cn=%n)(mail=%u))(status=valid)),
	// so aliases resolve to their owner and status=invalid users do not exist; home,
	// uid and gid come from homeDirectory, uidNumber, gidNumber.
	LDAP  *SlapdServer
	Extra string // raw config appended to dovecot.conf (later settings win)
}

// DovecotServer is a private Dovecot master (`dovecot -F`) and its children.
type DovecotServer struct {
	IMAPAddr string // 127.0.0.1:PORT
	LMTPAddr string // "" unless Options.LMTP
	AuthAddr string // "" unless Options.Auth
	Dir      string // dovecot.conf, passwd, dovecot.log, home/

	users map[string]DovecotUser
	ldap  *SlapdServer
	p     *proc
}

var dovecotSeq atomic.Int64

// StartDovecot starts a private Dovecot for this test; t.Cleanup stops it and removes
// its dir. Start it before a Postfix that uses its auth listener.
func StartDovecot(t testing.TB, o DovecotOptions) *DovecotServer {
	t.Helper()
	Need(t, "dovecot", "/usr/lib/dovecot/imap", "/usr/lib/dovecot/imap-login")
	if o.LMTP {
		Need(t, "/usr/lib/dovecot/lmtp")
	}
	if o.Sieve {
		Need(t, "/usr/lib/dovecot/modules/lib90_sieve_plugin.so")
	}
	if o.LDAP != nil {
		Need(t, "/usr/lib/dovecot/modules/auth/libauthdb_ldap.so")
	}
	start := time.Now()
	dir, err := tempDir("dc")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	d := &DovecotServer{Dir: dir, users: map[string]DovecotUser{}, ldap: o.LDAP}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: dovecot log (%s):\n%s", d.logPath(), tail(d.logPath(), 40))
		}
		p := d.p
		stopLater(func() { p.stop(); removeDir(nil, dir) })
	})
	if err := d.setup(o); err != nil {
		t.Fatalf("testenv: dovecot: %v", err)
	}
	for attempt := 0; ; attempt++ {
		ports, err := d.writeConfig(o)
		if err != nil {
			t.Fatalf("testenv: dovecot: %v", err)
		}
		err = d.start(ports)
		if err == nil {
			break
		}
		if attempt < 5 && addrInUse(err.Error()) {
			continue
		}
		t.Fatalf("testenv: dovecot: %v", err)
	}
	t.Logf("testenv: dovecot imap %s lmtp %s auth %s started in %s (dir %s)", d.IMAPAddr, d.LMTPAddr, d.AuthAddr,
		time.Since(start).Round(time.Millisecond), dir)
	return d
}

func (d *DovecotServer) logPath() string { return filepath.Join(d.Dir, "dovecot.log") }

// setup writes the passwd file (or the LDAP config) and creates the homes.
func (d *DovecotServer) setup(o DovecotOptions) error {
	if o.LDAP != nil {
		return writeFile(filepath.Join(d.Dir, "ldap.conf.ext"), fmt.Sprintf(dovecotLDAP,
			o.LDAP.URL, o.LDAP.AdminDN, o.LDAP.AdminPassword, o.LDAP.PeopleDN), 0o600)
	}
	users := o.Users
	if users == nil {
		for _, u := range SeedUsers {
			users = append(users, DovecotUser{Name: u.CN, Password: u.Password})
		}
	}
	if err := os.Mkdir(filepath.Join(d.Dir, "home"), 0o755); err != nil {
		return err
	}
	var pw strings.Builder
	for _, u := range users {
		if u.Name == "" || strings.ContainsAny(u.Name, ":\n") {
			return fmt.Errorf("bad DovecotUser name %q", u.Name)
		}
		if u.Home == "" {
			u.Home = filepath.Join(d.Dir, "home", u.Name)
		}
		if _, err := os.Stat(u.Home); os.IsNotExist(err) {
			if err := mkdirOwned(u.Home, MailUID, MailGID, 0o700); err != nil {
				return err
			}
		}
		p := u.Password
		if !strings.HasPrefix(p, "{") {
			p = "{PLAIN}" + p
		}
		// user:password:uid:gid:gecos:home:shell:extra
		fmt.Fprintf(&pw, "%s:%s:%d:%d::%s::\n", u.Name, p, MailUID, MailGID, u.Home)
		d.users[u.Name] = u
	}
	return writeFile(filepath.Join(d.Dir, "passwd"), pw.String(), 0o644)
}

// writeConfig picks ports and writes dovecot.conf; it returns the ports to wait for.
func (d *DovecotServer) writeConfig(o DovecotOptions) ([]int, error) {
	var ports []int
	port := func() (int, error) {
		p, err := freePort()
		ports = append(ports, p)
		return p, err
	}
	imapPort, err := port()
	if err != nil {
		return nil, err
	}
	d.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(imapPort))
	protocols := "imap"
	var b strings.Builder
	fmt.Fprintf(&b, `# written by internal/testenv: everything under %[1]s
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = dt-dovecot-%[2]d-%[3]d
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir
# tests: no auth penalty (anvil delays every login from an IP by up to 15 s after a
# failed one; auth cannot open this socket => penalty disabled)
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[4]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, d.Dir, os.Getpid(), dovecotSeq.Add(1), imapPort)
	if o.LDAP != nil {
		fmt.Fprintf(&b, "passdb {\n  driver = ldap\n  args = %[1]s/ldap.conf.ext\n}\nuserdb {\n  driver = ldap\n  args = %[1]s/ldap.conf.ext\n}\n", d.Dir)
	} else {
		fmt.Fprintf(&b, "passdb {\n  driver = passwd-file\n  args = username_format=%%n %[1]s/passwd\n}\nuserdb {\n  driver = passwd-file\n  args = username_format=%%n %[1]s/passwd\n}\n", d.Dir)
	}
	d.LMTPAddr, d.AuthAddr = "", ""
	if o.LMTP {
		p, err := port()
		if err != nil {
			return nil, err
		}
		protocols += " lmtp"
		d.LMTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		fmt.Fprintf(&b, `service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %d
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.com
`, p)
		if o.Sieve {
			b.WriteString("  mail_plugins = $mail_plugins sieve\n")
		}
		b.WriteString("}\n")
	}
	if o.Sieve {
		b.WriteString("plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}\n")
	}
	if o.Auth {
		p, err := port()
		if err != nil {
			return nil, err
		}
		d.AuthAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		// one setting per line: "{ a = b }" on one line is a config error
		fmt.Fprintf(&b, `service auth {
  inet_listener auth-tcp {
    address = 127.0.0.1
    port = %d
  }
}
`, p)
	}
	conf := "protocols = " + protocols + "\n" + b.String() + o.Extra + "\n"
	return ports, writeFile(filepath.Join(d.Dir, "dovecot.conf"), conf, 0o644)
}

func (d *DovecotServer) start(ports []int) error {
	path, err := lookBin("dovecot")
	if err != nil {
		return err
	}
	// -F: master stays in the foreground (our child); SIGTERM stops all its children.
	p, err := startProc("dovecot", d.logPath(), path, "-F", "-c", filepath.Join(d.Dir, "dovecot.conf"))
	if err != nil {
		return err
	}
	if err := p.waitReady(p.listenReady(ports...)); err != nil {
		p.stop()
		return err
	}
	d.p = p
	return nil
}

// Stop stops Dovecot (outage tests); Start starts it again with the same config and ports.
func (d *DovecotServer) Stop(t testing.TB) {
	t.Helper()
	d.p.stop()
}

// Start starts a stopped Dovecot again (same config, same ports).
func (d *DovecotServer) Start(t testing.TB) {
	t.Helper()
	if d.p != nil && !d.p.exited() {
		return
	}
	var ports []int
	for _, a := range []string{d.IMAPAddr, d.LMTPAddr, d.AuthAddr} {
		if a != "" {
			_, ps, _ := net.SplitHostPort(a)
			p, _ := strconv.Atoi(ps)
			ports = append(ports, p)
		}
	}
	if err := d.start(ports); err != nil {
		t.Fatalf("testenv: restarting dovecot: %v", err)
	}
}

// Log returns Dovecot's log.
func (d *DovecotServer) Log() string {
	b, _ := os.ReadFile(d.logPath())
	return string(b)
}

// WaitLog polls Dovecot's log until it contains substr; fails after timeout.
func (d *DovecotServer) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.Log(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %q not in the dovecot log after %s (log tail is logged at cleanup)", substr, timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (d *DovecotServer) user(t testing.TB, name string) DovecotUser {
	t.Helper()
	if u, ok := d.users[name]; ok {
		return u
	}
	if d.ldap != nil {
		c := d.ldap.Conn(t)
		res, err := c.Search(ldap.NewSearchRequest(d.ldap.PeopleDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
			fmt.Sprintf("(|(cn=%s)(mail=%s))", ldap.EscapeFilter(name), ldap.EscapeFilter(name)), []string{"homeDirectory"}, nil))
		if err == nil && len(res.Entries) == 1 {
			return DovecotUser{Name: name, Home: res.Entries[0].GetAttributeValue("homeDirectory")}
		}
	}
	t.Fatalf("testenv: dovecot has no user %q", name)
	return DovecotUser{}
}

// dovecotLDAP is the passdb/userdb args file: %[1]s URL, %[2]s bind DN, %[3]s password,
// %[4]s base. The password is checked by Dovecot against userPassword ({SSHA} etc.).
const dovecotLDAP = `uris = %[1]s
ldap_version = 3
dn = %[2]s
dnpass = %[3]s
base = %[4]s
scope = onelevel
auth_bind = no
default_pass_scheme = SSHA
pass_filter = (&(objectClass=posixAccount)(|(cn=%%n)(mail=%%u))(status=valid))
pass_attrs = cn=user, userPassword=password
user_filter = (&(objectClass=posixAccount)(|(cn=%%n)(mail=%%u))(status=valid))
user_attrs = cn=user, homeDirectory=home, uidNumber=uid, gidNumber=gid
iterate_filter = (&(objectClass=posixAccount)(status=valid))
iterate_attrs = cn=user
`

// Home returns a user's home directory.
func (d *DovecotServer) Home(t testing.TB, user string) string {
	t.Helper()
	return d.user(t, user).Home
}

// Maildir returns a user's maildir (<home>/Maildir); folder "" or "INBOX" is the
// maildir itself, other folders are Maildir++ ("<maildir>/.<folder>").
func (d *DovecotServer) Maildir(t testing.TB, user, folder string) string {
	t.Helper()
	md := filepath.Join(d.Home(t, user), "Maildir")
	if folder == "" || strings.EqualFold(folder, "INBOX") {
		return md
	}
	return filepath.Join(md, "."+folder)
}

// SetSieve installs script as the user's active Sieve script (~/.dovecot.sieve);
// it takes effect at the next LMTP delivery (needs Options.Sieve).
func (d *DovecotServer) SetSieve(t testing.TB, user, script string) {
	t.Helper()
	p := filepath.Join(d.Home(t, user), ".dovecot.sieve")
	if err := writeFile(p, script, 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Chown(p, MailUID, MailGID); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

var dropSeq atomic.Int64

// DropMessage writes raw (RFC 5322, CRLF or LF) straight into a user's maildir
// folder (tmp/ then rename into new/), creating the folder; owned by the mail user.
func (d *DovecotServer) DropMessage(t testing.TB, user, folder, raw string) {
	t.Helper()
	md := d.Maildir(t, user, folder)
	root := d.Maildir(t, user, "")
	for _, dir := range []string{root, md, md + "/cur", md + "/new", md + "/tmp"} {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			if err := mkdirOwned(dir, MailUID, MailGID, 0o700); err != nil {
				t.Fatalf("testenv: %v", err)
			}
		}
	}
	name := fmt.Sprintf("%d.M%dP%d.testenv", time.Now().Unix(), dropSeq.Add(1), os.Getpid())
	tmp := filepath.Join(md, "tmp", name)
	if err := writeFile(tmp, raw, 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Chown(tmp, MailUID, MailGID); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
