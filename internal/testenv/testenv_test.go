package testenv_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/redis/go-redis/v9"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := testenv.FreePort(t)
		if p < 20000 || p >= 32768 {
			t.Fatalf("port %d outside 20000-32767", p)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

func ldapSearch(t *testing.T, s *testenv.SlapdServer, filter string, attrs ...string) []*ldap.Entry {
	t.Helper()
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Search(ldap.NewSearchRequest(s.PeopleDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		filter, attrs, nil))
	if err != nil {
		t.Fatalf("search %s: %v", filter, err)
	}
	return res.Entries
}

func ldapBind(s *testenv.SlapdServer, dn, pw string) error {
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Bind(dn, pw)
}

func TestSlapd(t *testing.T) {
	s := testenv.Slapd(t)
	if got := ldapSearch(t, s, "(&(cn=alice)(status=valid))", "mail", "homeDirectory", "uidNumber"); len(got) != 1 ||
		got[0].GetAttributeValue("mail") != "alice@example.com" || got[0].GetAttributeValue("uidNumber") != "8" {
		t.Fatalf("alice: %+v", got)
	}
	if got := ldapSearch(t, s, "(&(cn=bob)(status=valid))"); len(got) != 0 {
		t.Fatalf("bob must be invalid: %d entries", len(got))
	}
	if got := ldapSearch(t, s, "(mail=c.smith@example.com)", "cn"); len(got) != 1 || got[0].GetAttributeValue("cn") != "carol" {
		t.Fatalf("carol alias: %+v", got)
	}
	if err := ldapBind(s, s.UserDN("alice"), "alicepw"); err != nil {
		t.Fatalf("alice bind: %v", err)
	}
	if err := ldapBind(s, s.UserDN("alice"), "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}

	s.AddUser(t, testenv.LDAPUser{CN: "dave", Mail: "dave@example.com", Password: "davepw", Status: "invalid"})
	s.AddUser(t, testenv.LDAPUser{CN: "dave", Mail: "dave@example.com", Password: "davepw2"}) // replace
	if err := ldapBind(s, s.UserDN("dave"), "davepw2"); err != nil {
		t.Fatalf("dave bind: %v", err)
	}
	s.SetStatus(t, "dave", "invalid")
	if got := ldapSearch(t, s, "(&(cn=dave)(status=invalid))"); len(got) != 1 {
		t.Fatalf("dave status: %d entries", len(got))
	}
	s.DeleteUser(t, "dave")
}

func TestSlapdRestart(t *testing.T) {
	s := testenv.Slapd(t)
	s.AddUser(t, testenv.LDAPUser{CN: "erin", Mail: "erin@example.com", Password: "{SSHA}" + strings.TrimPrefix(testenv.HashSSHA("erinpw"), "{SSHA}")})
	defer s.DeleteUser(t, "erin")
	s.Stop(t)
	if err := ldapBind(s, s.AdminDN, s.AdminPassword); err == nil {
		t.Fatal("bind succeeded while slapd is stopped")
	}
	s.Start(t)
	if err := ldapBind(s, s.UserDN("erin"), "erinpw"); err != nil {
		t.Fatalf("erin after restart: %v", err)
	}
}

func TestRedis(t *testing.T) {
	r := testenv.Redis(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING: %q %v", got, err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.FlushAll(t)
	if n, _ := c.Exists(ctx, "k").Result(); n != 0 {
		t.Fatalf("FlushAll left the key")
	}
	r.Stop(t)
	if conn, err := net.Dial("tcp", r.Addr); err == nil {
		conn.Close()
		t.Fatal("connect succeeded while redis is stopped")
	}
	r.Start(t)
	// a new client: the old pool backs off after failed dials
	c2 := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c2.Close()
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

func TestPostfixSwaks(t *testing.T) {
	// LMTP target that nothing listens on: delivery is deferred (Dovecot LMTP down)
	p := testenv.StartPostfix(t, testenv.PostfixOptions{LMTP: fmt.Sprintf("inet:127.0.0.1:%d", testenv.FreePort(t))})
	out, code := testenv.Swaks(t, p.SMTPAddr, "--from", "sender@example.org", "--to", "alice@example.com",
		"--header", "Subject: testenv")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	p.WaitLog(t, "status=deferred", 10*time.Second)
	if p.QueueEmpty(t) {
		t.Fatal("deferred message not in the queue")
	}
	// switch the transport to discard:, then Flush retries the deferred mail at once
	p.Reconfigure(t, map[string]string{"virtual_transport": "discard:"})
	p.Flush(t)
	p.WaitQueueEmpty(t, 10*time.Second)
	p.WaitLog(t, "status=sent", time.Second)
}

func TestDovecotIMAP(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{})
	d.DropMessage(t, "alice", "", "From: bob@example.org\r\nSubject: hello inbox\r\n\r\nbody\r\n")
	d.DropMessage(t, "alice", "Quarantine", "From: spam@example.org\r\nSubject: suspicious\r\n\r\nbody\r\n")
	names := d.List(t, "alice", "alicepw")
	if strings.Join(names, ",") != "INBOX,Quarantine" && strings.Join(names, ",") != "Quarantine,INBOX" {
		t.Fatalf("LIST: %q", names)
	}
	msgs := d.Messages(t, "alice", "alicepw", "Quarantine")
	if len(msgs) != 1 || !strings.Contains(msgs[0].Header, "Subject: suspicious") || msgs[0].UID == 0 ||
		!strings.HasSuffix(msgs[0].Raw, "body\r\n") {
		t.Fatalf("Quarantine: %+v", msgs)
	}
	t0 := time.Now()
	if _, err := testenv.IMAPLogin(d.IMAPAddr, "alice", "wrong"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	t.Logf("failed login took %s", time.Since(t0))
}

// TestEndToEnd: swaks -> Postfix (SASL via Dovecot auth on TCP) -> Dovecot LMTP with
// Sieve -> Maildir -> IMAP.
func TestEndToEnd(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{LMTP: true, Auth: true, Sieve: true})
	d.SetSieve(t, "alice", `require ["fileinto", "mailbox"];
if header :contains "subject" "[junk]" { fileinto :create "Junk"; }
`)
	p := testenv.StartPostfix(t, testenv.PostfixOptions{SASLPath: "inet:" + d.AuthAddr, LMTP: "inet:" + d.LMTPAddr})
	t0 := time.Now()
	for _, subj := range []string{"hello e2e", "[junk] buy now"} {
		out, code := testenv.Swaks(t, p.SMTPAddr, "--from", "sender@example.org", "--to", "alice@example.com",
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "alicepw", "--header", "Subject: "+subj)
		if code != 0 {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
	}
	t.Logf("2 messages sent: %s", time.Since(t0))
	out, code := testenv.Swaks(t, p.SMTPAddr, "--from", "sender@example.org", "--to", "alice@example.com",
		"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong")
	t.Logf("wrong password: %s", time.Since(t0))
	if code == 0 || !strings.Contains(out, "535") {
		t.Fatalf("wrong password: exit %d:\n%s", code, out)
	}
	p.WaitQueueEmpty(t, 10*time.Second)
	p.WaitLog(t, "sasl_username=alice", time.Second)
	t.Logf("queue empty: %s", time.Since(t0))
	inbox := d.WaitMessages(t, "alice", "alicepw", "INBOX", 1, 5*time.Second)
	junk := d.WaitMessages(t, "alice", "alicepw", "Junk", 1, 5*time.Second)
	if len(inbox) != 1 || !strings.Contains(inbox[0].Header, "Subject: hello e2e") {
		t.Fatalf("INBOX: %+v", inbox)
	}
	if len(junk) != 1 || !strings.Contains(junk[0].Header, "Subject: [junk] buy now") {
		t.Fatalf("Junk: %+v", junk)
	}
}

// TestDovecotLDAP: Dovecot's passdb/userdb is the shared slapd; an alias delivers to
// its owner over LMTP, an invalid user does not exist.
func TestDovecotLDAP(t *testing.T) {
	s := testenv.Slapd(t)
	d := testenv.StartDovecot(t, testenv.DovecotOptions{LDAP: s, LMTP: true})
	if _, err := testenv.IMAPLogin(d.IMAPAddr, "bob", "bobpw"); err == nil {
		t.Fatal("bob (status=invalid) could log in")
	}
	before := len(d.Messages(t, "carol", "carolpw", "INBOX"))
	out, code := testenv.Swaks(t, d.LMTPAddr, "--protocol", "LMTP", "--from", "sender@example.org",
		"--to", "c.smith@example.com", "--header", "Subject: via alias")
	if code != 0 {
		t.Fatalf("swaks LMTP exit %d:\n%s", code, out)
	}
	msgs := d.Messages(t, "carol@example.com", "carolpw", "INBOX")
	if len(msgs) != before+1 || !strings.Contains(msgs[len(msgs)-1].Header, "Subject: via alias") {
		t.Fatalf("carol INBOX: %d messages (before %d)", len(msgs), before)
	}
	if md := d.Maildir(t, "carol", ""); !strings.HasPrefix(md, s.HomeDir) {
		t.Fatalf("carol's maildir %s not under %s", md, s.HomeDir)
	}
	out, code = testenv.Swaks(t, d.LMTPAddr, "--protocol", "LMTP", "--from", "sender@example.org", "--to", "bob@example.com")
	if code == 0 || !strings.Contains(out, "550") {
		t.Fatalf("LMTP to invalid bob: exit %d:\n%s", code, out)
	}
}

// TestNeedCI: a missing binary skips, but fails with CI=true (run in a child process).
func TestNeedCI(t *testing.T) {
	if os.Getenv("TESTENV_NEED_CHILD") == "1" {
		testenv.Need(t, "no-such-binary-dovetail")
		return
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestNeedCI$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_NEED_CHILD=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		switch {
		case ci == "" && (err != nil || !strings.Contains(string(out), "--- SKIP")):
			t.Fatalf("CI unset: want a skip, got %v:\n%s", err, out)
		case ci == "true" && (err == nil || !strings.Contains(string(out), "CI=true: not skipping")):
			t.Fatalf("CI=true: want a failure, got %v:\n%s", err, out)
		}
	}
}

func TestSharedDir(t *testing.T) {
	d := testenv.SharedDir(t)
	if _, err := os.Stat(d + "/recipes"); err != nil {
		t.Fatalf("SharedDir %s: %v", d, err)
	}
}

func TestRedisFreeze(t *testing.T) {
	r := testenv.Redis(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	t.Run("frozen", func(t *testing.T) {
		r.Freeze(t)
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatal("PING answered while frozen")
		}
	}) // Cleanup thaws
	t.Run("stopped", func(t *testing.T) { r.Stop(t) }) // Cleanup restarts
	c2 := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c2.Close()
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after the subtests: %v", err)
	}
}

// TestPostfixPolicy: PolicyService is consulted at RCPT (a stub that rejects one address).
func TestPostfixPolicy(t *testing.T) {
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 0, 4096)
				tmp := make([]byte, 4096)
				for {
					n, err := c.Read(tmp)
					if err != nil {
						return
					}
					buf = append(buf, tmp[:n]...)
					if i := strings.Index(string(buf), "\n\n"); i >= 0 {
						action := "DUNNO"
						if strings.Contains(string(buf[:i]), "recipient=blocked@example.com") {
							action = "REJECT blocked by policy"
						}
						fmt.Fprintf(c, "action=%s\n\n", action)
						buf = buf[i+2:]
					}
				}
			}()
		}
	}()
	p := testenv.StartPostfix(t, testenv.PostfixOptions{PolicyService: l.Addr().String()})
	if out, code := testenv.Swaks(t, p.SMTPAddr, "--from", "s@example.org", "--to", "alice@example.com"); code != 0 {
		t.Fatalf("alice: exit %d\n%s", code, out)
	}
	out, code := testenv.Swaks(t, p.SMTPAddr, "--from", "s@example.org", "--to", "blocked@example.com")
	if code == 0 || !strings.Contains(out, "blocked by policy") {
		t.Fatalf("blocked: exit %d\n%s", code, out)
	}
}
