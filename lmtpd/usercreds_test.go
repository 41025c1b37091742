package lmtpd

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// TestSymlinkedMaildirIsTempfail: lmtpd as root delivers with the user's
// filesystem credentials, so a user who replaced Maildir/new by a symlink to a
// root-owned directory gets a 451 for that recipient (logged with the reason)
// — never a 250, and nothing lands in the directory — while the other
// recipient of the same transaction is delivered.
// nobodyUID owns the mail in the tests of root's lmtpd working as the user.
const nobodyUID = 65534

// credsEnv is an lmtpd running as root (the test fails under CI=true when not)
// whose users' mail belongs to nobodyUID, logging into the returned buffer;
// more adjusts the options further.
func credsEnv(t *testing.T, more func(*Options)) (*env, *testenv.LogBuffer) {
	t.Helper()
	testenv.Need(t) // root: only root's lmtpd switches to the user's credentials
	var logb testenv.LogBuffer
	e := newEnv(t, func(o *Options) {
		o.Config.MailUID, o.Config.MailGID = nobodyUID, nobodyUID
		o.Logger = slog.New(slog.NewTextHandler(&logb, nil))
		if more != nil {
			more(o)
		}
	})
	return e, &logb
}

func TestSymlinkedMaildirIsTempfail(t *testing.T) {
	const uid = nobodyUID
	e, logb := credsEnv(t, nil)
	target := filepath.Join(e.dir, "logrotate.d")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(e.dir, "alice", "Maildir")
	for _, d := range []string{filepath.Dir(md), md, filepath.Join(md, "cur"), filepath.Join(md, "tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(target, filepath.Join(md, "new")); err != nil {
		t.Fatal(err)
	}
	_, d := e.dial().send("s@example.net", []string{"alice@example.com", "carol@example.com"}, testMsg)
	if len(d) != 2 || !strings.HasPrefix(d[0], "451 4.3.0") || !strings.HasPrefix(d[1], "250") {
		t.Fatalf("replies %q, want 451 4.3.0 for alice and 250 for carol", d)
	}
	if fs := files(t, target); len(fs) != 0 {
		t.Errorf("written into the symlink's target: %q", fs)
	}
	if fs := files(t, filepath.Join(e.dir, "carol", "Maildir", "new")); len(fs) != 1 {
		t.Errorf("carol: %q", fs)
	}
	if logs := logb.String(); !strings.Contains(logs, "result=tempfail") || !strings.Contains(logs, "permission denied") {
		t.Errorf("no tempfail with its reason logged:\n%s", logs)
	}
}
