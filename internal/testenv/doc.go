// Package testenv starts REAL servers from Debian's packages (slapd, Redis, Postfix,
// Dovecot) in temp dirs on random loopback ports, for integration tests, and stops them.
//
// Wire it into every package that uses it:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// # Shared vs per-test servers
//
// Slapd(t) and Redis(t) are started lazily, once per test binary, and stopped by Main
// after all tests ran. StartPostfix and StartDovecot are cheap (30-100 ms) and belong
// to one test: t.Cleanup stops them and removes their dirs.
//
// # Skips and CI
//
// Need(t, binaries...) skips when not root or a binary is missing; with CI=true it
// fails instead (a server that cannot start never silently skips in CI). Every
// getter/starter calls it. `make test` installs the packages via scripts/install-deps.sh.
//
// # Seed directory (Slapd)
//
// Base dc=example,dc=com, users under ou=people (DN cn=<cn>,ou=people,dc=example,dc=com),
// rootDN cn=admin,dc=example,dc=com / adminsecret. Entries are inetOrgPerson +
// posixAccount + mailAccountStatus (aux class with the custom attribute `status`,
// caseIgnoreMatch, single-valued: valid|invalid). Indexes: objectClass, cn, uid, mail,
// status (eq). userPassword is readable only by self/rootDN (anonymous may bind);
// everything else is anonymously readable. Seed users (uid = cn, uidNumber/gidNumber 8
// = Debian's mail user, home <Slapd.HomeDir>/<cn> owned by mail, passwords {SSHA}):
//
//	cn     password  status   mail
//	alice  alicepw   valid    alice@example.com
//	bob    bobpw     invalid  bob@example.com
//	carol  carolpw   valid    carol@example.com, c.smith@example.com (alias)
//
// Tests that change entries should add their own users (AddUser replaces an existing
// entry) or restore what they change: the slapd is shared by the whole binary.
//
// # API at a glance
//
//	Main(m)  Need(t, bins...)  SharedDir(t)  FreePort(t)  CI()  HashSSHA(pw)
//	Slapd(t) *SlapdServer: URL LDAPIURL BaseDN PeopleDN AdminDN AdminPassword Port Dir HomeDir
//	  AddUser(t, LDAPUser) DeleteUser(t, cn) SetStatus(t, cn, s) Modify(t, cn, attr, vals...)
//	  UserDN(cn) Conn(t) *ldap.Conn (rootDN-bound) Stop(t) Start(t) Running() Log()
//	Redis(t) *RedisServer: Addr Port Dir; Stop(t) Start(t) (same port, starts EMPTY)
//	  Freeze(t)/Thaw(t) (SIGSTOP/SIGCONT: connects succeed, nothing answers) FlushAll(t) Log()
//	StartPostfix(t, PostfixOptions) *PostfixServer: SMTPAddr Port Dir
//	  Log() WaitLog(t, s, d) Flush(t) QueueFiles(t) QueueEmpty(t) WaitQueueEmpty(t, d)
//	  Reconfigure(t, map) (postconf -e + restart) Stop(t) Start(t)
//	Swaks(t, addr, args...) (out, exit code); "--protocol", "LMTP" talks LMTP
//	StartDovecot(t, DovecotOptions) *DovecotServer: IMAPAddr LMTPAddr AuthAddr Dir
//	  List(t, u, p) Messages(t, u, p, box) WaitMessages(t, u, p, box, n, d) Home/Maildir(t, u...)
//	  DropMessage(t, u, folder, raw) SetSieve(t, u, script) Log() WaitLog(t, s, d) Stop(t) Start(t)
//	IMAPLogin(addr, u, p) / DialIMAP(t, ...) *IMAPClient: Cmd(raw) List() Messages(box) Close()
//
// # Postfix
//
// StartPostfix writes main.cf/master.cf (chroot n, no DNS, maillog_file in the dir,
// back-dated config), creates the queue with Postfix's owners and runs master(8) in
// the foreground. Mail for VirtualDomains (default example.com) goes to LMTP when
// set, else it is discarded (Extra["virtual_transport"] changes that). Relaying is
// allowed from 127.0.0.0/8 (mynetworks) and for SASL-authenticated clients; other
// destinations bounce (no DNS). Start the SASL endpoint (Dovecot auth or authd) BEFORE
// Postfix: StartPostfix fails when it is not reachable. Successful milter/policy
// conversations are silent in the maillog; with milter_default_action=tempfail a dead
// milter 451s every session at CONNECT.
//
// # Dovecot
//
// StartDovecot runs `dovecot -F` with a self-contained config: IMAP (and optionally
// LMTP, the auth protocol on TCP for Postfix SASL, Sieve in LMTP), passwd-file users
// (default alice, bob, carol with the seed passwords, homes under Dir/home) or, with
// DovecotOptions.LDAP, the shared slapd (aliases resolve, status=invalid users do not
// exist, homes are the LDAP homeDirectory). mail_location maildir:~/Maildir, mail
// processes as MailUID/MailGID (first_valid_uid 1), auth penalty off, failed logins take
// ~0.5 s (Dovecot's failure-delay timer). Dovecot's master sleeps 1 s when it stops, so
// the stop runs in the background and Main waits for it at the end.
//
// # Environment
//
//	CI=true           missing root/binaries/servers fail instead of skipping
//	DOVETAIL_KEEP=1   keep temp dirs (/tmp/dt-<kind>-<pid>.*) with configs and logs
//	DOVETAIL_SHARED   location of the shared material (default ../shared)
//
// # Lifecycle
//
// Every daemon runs in the foreground as our child and is stopped with SIGTERM + Wait
// (SIGKILL after 5 s); no system service is touched. If the test binary dies anyway
// (`go test -timeout`, SIGKILL), Pdeathsig plus a tiny `sh` watchdog per daemon (Postfix's
// master clears Pdeathsig) send SIGTERM, and the next Main removes the dead binary's
// dirs. SIGINT/SIGTERM to the binary stop everything first. Ports are drawn from
// 20000-32767 (below the ephemeral range), never twice per binary; readiness means the
// daemon itself holds the listening socket (plus PING / rootDSE for Redis / slapd), and a
// start that loses its port (EADDRINUSE) is retried with new ports. Errors carry the
// server's log tail; per-test servers log theirs when the test failed.
package testenv
