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
// # Postfix
//
// StartPostfix writes main.cf/master.cf (chroot n, no DNS, maillog_file in the dir,
// back-dated config), creates the queue with Postfix's owners and runs master(8) in
// the foreground. Mail for VirtualDomains (default example.com) goes to LMTP when
// set, else it is discarded. Start the SASL endpoint (Dovecot auth or authd) BEFORE
// Postfix. Successful milter/policy conversations are silent in the maillog.
//
// # Dovecot
//
// StartDovecot runs `dovecot -F` with a self-contained config: IMAP (and optionally
// LMTP, the auth protocol on TCP for Postfix SASL, Sieve in LMTP), passwd-file users,
// mail_location maildir:~/Maildir, mail processes as MailUID/MailGID (first_valid_uid 1).
//
// # Environment
//
//	CI=true           missing root/binaries/servers fail instead of skipping
//	DOVETAIL_KEEP=1   keep temp dirs (/tmp/dt-*) with configs and logs
//	DOVETAIL_SHARED   location of the shared material (default ../shared)
//
// Daemons run as our children with Pdeathsig=SIGTERM, so they die with the test binary
// even when it is killed by `go test -timeout`. Ports are drawn from 20000-32767
// (below the ephemeral range) and a start is retried on EADDRINUSE.
package testenv
