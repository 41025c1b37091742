package static

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/config"
)

const sample = `# test users
alice@example.com:{PLAIN}alicepw:1000:1000::/home/alice::mail=a.smith@example.com,Alice@Example.org quota=10M
bob@example.com:{SSHA}dOiHfu7KYmek5e+ZkHo+1Qu5XFCkSNss:1001:1001::/home/bob::status=invalid
carol:{SHA512-CRYPT}$6$dxfgCnrrcKFHq/5K$wfaiyiBHfuC411NC3ptye2LedgZWOZQUgzj3R0v7a9m714dVEjmjhBuSTVKUHj9Wgwaqy/0TgJ/DG2fs6TYAz/
dave@example.com:$1$NGZSeYcH$ALHRJK5ZFfg4Fo9EbPOGF1::::::userdb_quota_rule=*:storage=1024 userdb_mail=maildir:~/Mail
`

func write(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "users")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStatic(t *testing.T) {
	p := write(t, t.TempDir(), sample)
	cfg := DefaultConfig()
	cfg.Path = p
	cfg.DefaultHome = "/var/mail/%d/%n"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		login, pw string
		want      error
	}{
		{"alice@example.com", "alicepw", nil},
		{"ALICE@example.com", "alicepw", nil},
		{"alice@example.com", "wrong", directory.ErrInvalidCredentials},
		{"bob@example.com", "secret", directory.ErrDisabled},
		{"bob@example.com", "wrong", directory.ErrInvalidCredentials},
		{"carol", "secret", nil},
		{"dave@example.com", "secret", nil}, // bare $1$ → CRYPT default scheme
		{"nobody", "x", directory.ErrNotFound},
		{"*)(cn=*", "x", directory.ErrNotFound},
	} {
		u, err := d.Authenticate(ctx, tc.login, tc.pw)
		if !errors.Is(err, tc.want) || (err == nil) != (u != nil) {
			t.Errorf("Authenticate(%q,%q) = %v, %v; want %v", tc.login, tc.pw, u, err, tc.want)
		}
	}
	u, err := d.LookupAddress(ctx, "alice@example.org")
	if err != nil || u.Login != "alice@example.com" || u.Quota != 10<<20 || u.UID != 1000 || u.Home != "/home/alice" {
		t.Fatalf("LookupAddress = %+v, %v", u, err)
	}
	if u, _ := d.LookupLogin(ctx, "bob@example.com"); u == nil || u.Enabled {
		t.Errorf("bob should be found disabled: %+v", u)
	}
	if u, _ := d.LookupLogin(ctx, "dave@example.com"); u == nil || u.Quota != 1<<20 || u.Home != "/var/mail/example.com/dave" || u.Attrs["mail"][0] != "maildir:~/Mail" {
		t.Errorf("dave = %+v", u)
	}
	scheme, data, _, err := d.StoredPassword(ctx, "alice@example.com")
	if err != nil || scheme != "PLAIN" || data != "alicepw" {
		t.Errorf("StoredPassword = %q %q %v", scheme, data, err)
	}

	// Reload on change; a broken file keeps the old users.
	d.cfg.CheckInterval = 0
	write(t, filepath.Dir(p), "erin:{PLAIN}erinpw\n")
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(p, future, future)
	if _, err := d.Authenticate(ctx, "erin", "erinpw"); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	write(t, filepath.Dir(p), "broken line without colon but :x:notanumber\n")
	future = future.Add(2 * time.Second)
	os.Chtimes(p, future, future)
	if _, err := d.Authenticate(ctx, "erin", "erinpw"); err != nil {
		t.Fatalf("a broken reload must keep the old users: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	_, err := parse("u", []byte("a:x:1\n:nouser\nb:x:zz\nc:x::::::status=maybe\na:y\nd:x::::::mail=notanaddress\n"+strings.Repeat("x", maxLine+10)+"\n"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"u:2: empty user name", "u:3: uid", "u:4: status", "u:5: user \"a\" already defined on line 1", "u:6: mail", "u:7:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestEmbeddedDefault(t *testing.T) {
	d, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(context.Background(), "demo@example.com", "demo"); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add(defaultUsers)
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := parse("fuzz", data)
		if err == nil && tab == nil {
			t.Fatal("nil table without error")
		}
	})
}

// A users file that is not there: the hint must not send the admin to the
// demo users, which a config file never gets (leaving path empty means
// <data_dir>/users, which must then exist).
func TestValidateMissingPathHint(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "nonexistent")
	err := cfg.Validate()
	if err == nil {
		t.Fatal("missing users file accepted")
	}
	msg := err.Error()
	if strings.Contains(msg, "for the embedded demo users") || !strings.Contains(msg, "<data_dir>/users") {
		t.Errorf("hint = %q; want it to name <data_dir>/users, not offer the demo users", msg)
	}
}

// A users file that cannot be read at a reload (written with the wrong owner
// or mode, then fixed with chown/chmod) keeps the loaded users, and is read
// again at the next check: fixing its permissions changes neither its size
// nor its mtime, so the edit was never picked up (a removed user kept
// logging in) until the file changed once more or the daemon restarted.
func TestReloadRetriesUnreadableFile(t *testing.T) {
	p := write(t, t.TempDir(), "alice:{PLAIN}oldpw\n")
	cfg := DefaultConfig()
	cfg.Path, cfg.CheckInterval = p, 0
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	write(t, filepath.Dir(p), "alice:{PLAIN}newpw\n")
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(p, future, future)
	d.readFile = func(string) ([]byte, error) { return nil, os.ErrPermission }
	if _, err := d.Authenticate(ctx, "alice", "oldpw"); err != nil {
		t.Fatalf("an unreadable file must keep the loaded users: %v", err)
	}
	d.readFile = os.ReadFile // permissions fixed; size and mtime unchanged
	if _, err := d.Authenticate(ctx, "alice", "newpw"); err != nil {
		t.Fatalf("the file readable again was not reloaded: %v", err)
	}
	if _, err := d.Authenticate(ctx, "alice", "oldpw"); !errors.Is(err, directory.ErrInvalidCredentials) {
		t.Errorf("old password after the reload: %v", err)
	}
}

// Dovecot's boolean passdb fields are true whenever they exist, whatever
// their value ("nodelay", "nodelay=yes", "nodelay=no" all mean true; its
// docs suggest "nologin= reason=…" to block a user). A users file migrated
// from Dovecot with "nologin=" or "nologin=y" kept the account enabled, and
// the user blocked there logged in here; "fail" likewise fails the passdb.
func TestDovecotBooleanFieldsDisable(t *testing.T) {
	for _, extra := range []string{"nologin", "nologin=", "nologin=y", "nologin=no", "reason=upgrade nologin=yes", "fail", "fail=y"} {
		p := write(t, t.TempDir(), "u:{PLAIN}pw::::::"+extra+"\n")
		cfg := DefaultConfig()
		cfg.Path = p
		d, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Authenticate(context.Background(), "u", "pw"); !errors.Is(err, directory.ErrDisabled) {
			t.Errorf("%q: Authenticate = %v, want ErrDisabled", extra, err)
		}
	}
}

// The reload check measured the time since the last one on the wall clock:
// after the clock was stepped back (NTP, a VM restored from a snapshot) the
// difference was negative, below check_interval, until the clock caught up
// again, so edits to the users file (a removed user) were ignored for as
// long as the step.
func TestReloadAfterClockStepBack(t *testing.T) {
	p := write(t, t.TempDir(), "alice:{PLAIN}oldpw\n")
	cfg := DefaultConfig()
	cfg.Path, cfg.CheckInterval = p, config.Duration(time.Second)
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The last check happened at what is now an hour in the future.
	d.lastCheck.Store(time.Now().Add(time.Hour).UnixNano())
	write(t, filepath.Dir(p), "alice:{PLAIN}newpw\n")
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(p, future, future)
	if _, err := d.Authenticate(context.Background(), "alice", "newpw"); err != nil {
		t.Fatalf("users file not reloaded after the clock went back: %v", err)
	}
}

// A caller that has given up (authd's lookup_timeout passed while the
// password waited for a free hash slot) gets a temporary failure, not a
// verdict: the password was not checked.
func TestAuthenticateAfterDeadline(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = write(t, t.TempDir(), sample)
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if u, err := d.Authenticate(ctx, "carol", "secret"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("Authenticate after the deadline = %v, %v; want ErrUnavailable", u, err)
	}
	if _, err := d.Authenticate(context.Background(), "carol", "secret"); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
}

// A password that was checked and did not match is a wrong password even when
// the caller's deadline passed during the check (a hash that got its slot
// late): reported as unavailable, it went unpenalised and uncached in authd,
// so a client that kept the hash slots busy guessed with no penalty at all.
func TestAuthenticateMismatchPastDeadline(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = write(t, t.TempDir(), sample)
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := &expiresDuringCheck{Context: context.Background()}
	if _, err := d.Authenticate(ctx, "carol", "wrong"); !errors.Is(err, directory.ErrInvalidCredentials) {
		t.Errorf("a mismatch found as the deadline passed: %v, want ErrInvalidCredentials", err)
	}
}

// expiresDuringCheck is a context whose deadline passes right after the first
// look at it: the hash got its slot in time and finished late.
type expiresDuringCheck struct {
	context.Context
	looked atomic.Bool
}

func (c *expiresDuringCheck) Err() error {
	if c.looked.Swap(true) {
		return context.DeadlineExceeded
	}
	return nil
}
