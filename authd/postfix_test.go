package authd_test

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/authd"
	"github.com/dovetail-mail/dovetail/directory/ldap"
	"github.com/dovetail-mail/dovetail/directory/password"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestPostfixSwaks is the must-show: swaks through a real Postfix smtpd
// (smtpd_sasl_type = dovecot, smtpd_sasl_path at authd) against users in a
// real slapd, in both LDAP auth modes.
func TestPostfixSwaks(t *testing.T) {
	slapd := testenv.Slapd(t)
	// dora's userPassword is Dovecot's {CRAM-MD5} context: it serves CRAM-MD5 and
	// (by computing the context) PLAIN/LOGIN. The seeds use {SSHA}, which cannot
	// serve CRAM-MD5 — as in Dovecot.
	ctx := password.CRAMMD5Context("dorapw")
	slapd.AddUser(t, testenv.LDAPUser{CN: "dora", Mail: "dora@example.com", Password: "{CRAM-MD5}" + hex.EncodeToString(ctx[:])})

	for _, mode := range []string{ldap.ModePassword, ldap.ModeBind} {
		t.Run(mode, func(t *testing.T) {
			lc := ldap.DefaultConfig()
			lc.URIs = []string{slapd.URL}
			lc.BindDN, lc.BindPassword = slapd.AdminDN, ldap.Secret(slapd.AdminPassword)
			lc.BaseDN = slapd.PeopleDN
			lc.UserFilter = "(cn=%u)"
			if mode == ldap.ModeBind {
				// The seeds' filter: a disabled user is not even found. In password
				// mode bob is found and refused for his status (ErrDisabled).
				lc.PassFilter = "(&(cn=%u)(status=valid))"
			}
			lc.AuthMode = mode
			// The defaults (5 s / 3 s), not shorter: the outage below is a refused
			// connection, answered at once, so the timeouts only ever bound a
			// healthy slapd, which a loaded machine can make slow.
			dir, err := ldap.New(lc, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()

			cfg := authd.DefaultConfig()
			cfg.Mechanisms = []string{"PLAIN", "LOGIN", "CRAM-MD5"}
			cfg.FailureDelay, cfg.FailureDelayMax = config.Duration(10*time.Millisecond), config.Duration(50*time.Millisecond)
			var logs testenv.LogBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			srv, err := authd.New(cfg, dir, log, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			pf := testenv.StartPostfix(t, testenv.PostfixOptions{SASLPath: "inet:" + ln.Addr().String()})

			swaks := func(mech, user, pw string) string {
				t.Helper()
				out, _ := testenv.Swaks(t, pf.SMTPAddr, "--from", "sender@example.org", "--to", "alice@example.com",
					"--auth", mech, "--auth-user", user, "--auth-password", pw, "--quit-after", "AUTH")
				return out
			}
			expect := func(mech, user, pw, code string) {
				t.Helper()
				out := swaks(mech, user, pw)
				if testing.Verbose() {
					for _, l := range strings.Split(out, "\n") {
						if strings.HasPrefix(l, "<") && strings.Contains(l, " "+code+" ") {
							t.Logf("%s %s: %s", mech, user, l)
						}
					}
				}
				if !strings.Contains(out, "<~  "+code) && !strings.Contains(out, "<~* "+code) && !strings.Contains(out, "<-  "+code) && !strings.Contains(out, "<** "+code) {
					t.Errorf("%s %s/%s: want %s, swaks said:\n%s", mech, user, pw, code, out)
				}
			}
			expect("PLAIN", "alice", "alicepw", "235")
			expect("LOGIN", "alice", "alicepw", "235")
			expect("PLAIN", "alice", "wrong", "535")
			expect("LOGIN", "alice", "wrong", "535")
			expect("PLAIN", "bob", "bobpw", "535") // status=invalid
			expect("PLAIN", "*)(cn=*", "alicepw", "535")
			if mode == ldap.ModePassword {
				expect("CRAM-MD5", "dora", "dorapw", "235")
				expect("CRAM-MD5", "dora", "wrong", "535")
				expect("CRAM-MD5", "alice", "alicepw", "535") // {SSHA} cannot serve CRAM-MD5
				expect("CRAM-MD5", "bob", "bobpw", "535")
				expect("PLAIN", "dora", "dorapw", "235")
			} else if out := swaks("CRAM-MD5", "dora", "dorapw"); strings.Contains(out, "235 ") {
				t.Errorf("CRAM-MD5 offered in auth-bind mode:\n%s", out)
			}

			// slapd down: a login that is not cached gets 454 (temporary) …
			slapd.Stop(t)
			restarted := false
			defer func() {
				if !restarted {
					slapd.Start(t)
				}
			}()
			expect("PLAIN", "carol", "carolpw", "454")
			expect("LOGIN", "carol", "carolpw", "454")
			// … and success again once slapd is back, without restarting authd.
			slapd.Start(t)
			restarted = true
			expect("PLAIN", "carol", "carolpw", "235")
			expect("LOGIN", "carol", "carolpw", "235")

			if strings.Contains(logs.String(), "alicepw") || strings.Contains(logs.String(), "carolpw") {
				t.Errorf("a password reached the log:\n%s", logs.String())
			}
			if !strings.Contains(logs.String(), "result=ok") || !strings.Contains(logs.String(), "rip=127.0.0.1") {
				t.Errorf("attempt log lines missing:\n%s", logs.String())
			}
		})
	}
}
