package lmtpd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// TestUserSieveReadAsUser: root's lmtpd opens a user's Sieve scripts with the
// user's filesystem credentials, as Dovecot does, so a ~/.dovecot.sieve or a
// :personal include the user symlinked to a root-only 0600 file is not read:
// the open fails with EACCES, logged, and the message takes the implicit keep
// without anything the file says. The admin's global script, root-only 0600
// as well, is still read (as the daemon), and the user's own scripts work.
func TestUserSieveReadAsUser(t *testing.T) {
	testenv.Need(t) // before writeRootOnly: root-only files need root
	const uid = nobodyUID
	globals := t.TempDir()
	before := filepath.Join(globals, "before.sieve")
	writeRootOnly(t, before, `require "editheader"; addheader "X-Global" "read";`)
	e, logb := credsEnv(t, func(o *Options) {
		o.Config.Sieve.Before = []string{before}
		o.Filter = NewSieveFilter(o.Config.Sieve, "+", nil, nil)
	})
	// The user reads their scripts by path, as in Dovecot: the levels above
	// the home must be searchable (t.TempDir's are 0700).
	for _, d := range []string{filepath.Dir(e.dir), e.dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(e.dir, "shadow")
	writeRootOnly(t, secret, `require "editheader"; addheader "X-Secret" "read by root";`)
	home := filepath.Join(e.dir, "alice")
	userDir := filepath.Join(home, "sieve")
	for _, d := range []string{home, userDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	active := filepath.Join(home, ".dovecot.sieve")
	userFile := func(p, content string) {
		t.Helper()
		os.Remove(p)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	userLink := func(target, p string) {
		t.Helper()
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	inbox := filepath.Join(home, "Maildir")

	for i, tc := range []struct {
		name      string
		setup     func()
		folder    string // where the message lands
		wantLog   string
		wantFound []string
	}{
		{"active script linked to a root-only file", func() {
			userLink(secret, active)
		}, inbox, "permission denied", nil},
		{"personal include linked to a root-only file", func() {
			userFile(active, `require "include"; include :personal "rules";`)
			userLink(secret, filepath.Join(userDir, "rules.sieve"))
		}, inbox, "rules", nil},
		{"the user's own scripts", func() {
			userFile(active, `require ["include", "fileinto", "mailbox"]; include :personal "rules"; fileinto :create "Mine";`)
			userFile(filepath.Join(userDir, "rules.sieve"), `require "editheader"; addheader "X-Rules" "user";`)
		}, filepath.Join(inbox, ".Mine"), "", []string{"X-Global: read", "X-Rules: user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			seen := len(logb.String())
			id := fmt.Sprintf("<creds%d@example.net>", i) // not a duplicate of the last one
			msg := strings.Replace(testMsg, "<m1@example.net>", id, 1)
			if _, d := e.dial().send("s@example.net", []string{"alice@example.com"}, msg); len(d) != 1 || !strings.HasPrefix(d[0], "250") {
				t.Fatalf("replies %q", d)
			}
			var msgs []string
			for _, m := range stored(t, tc.folder) {
				if strings.Contains(m, id) {
					msgs = append(msgs, m)
				}
			}
			if len(msgs) != 1 {
				t.Fatalf("%d copies in %s, want 1", len(msgs), tc.folder)
			}
			if strings.Contains(msgs[0], "X-Secret") {
				t.Errorf("the root-only file was read for the user:\n%s", msgs[0])
			}
			for _, want := range tc.wantFound {
				if !strings.Contains(msgs[0], want) {
					t.Errorf("delivered without %q:\n%s", want, msgs[0])
				}
			}
			logs := logb.String()[seen:]
			if tc.wantLog != "" && (!strings.Contains(logs, "sieve failed") || !strings.Contains(logs, tc.wantLog)) {
				t.Errorf("no sieve failure mentioning %q logged:\n%s", tc.wantLog, logs)
			}
		})
	}
}

// writeRootOnly writes a root-owned 0600 file.
func writeRootOnly(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
