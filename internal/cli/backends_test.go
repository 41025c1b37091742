package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
)

// The quickstart serves <data_dir>/users once it exists, the embedded demo
// users (with a warning) until then.
func TestDefaultUsersFile(t *testing.T) {
	for _, tc := range []struct {
		name      string
		usersFile string
		login     string
		pass      string
		wantErr   error
		wantWarn  bool
	}{
		{"embedded demo", "", "demo@example.com", "demo", nil, true},
		{"data dir file", "alice@example.com:{PLAIN}secret:8:8::::\n", "alice@example.com", "secret", nil, false},
		{"data dir file replaces demo", "alice@example.com:{PLAIN}secret:8:8::::\n", "demo@example.com", "demo", directory.ErrNotFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.usersFile != "" {
				if err := os.WriteFile(filepath.Join(dir, "users"), []byte(tc.usersFile), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg := DefaultConfig()
			cfg.DataDir = dir
			var logs bytes.Buffer
			a := &App{cfg: cfg, Log: slog.New(slog.NewTextHandler(&logs, nil))}
			defer a.Close()
			d, err := a.Directory(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.Authenticate(context.Background(), tc.login, tc.pass)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) && !errors.Is(err, directory.ErrInvalidCredentials) {
				t.Fatalf("Authenticate = %v, want %v", err, tc.wantErr)
			}
			if got := bytes.Contains(logs.Bytes(), []byte("embedded demo users")); got != tc.wantWarn {
				t.Errorf("warning logged = %v, want %v; logs: %s", got, tc.wantWarn, logs.String())
			}
		})
	}
}

// The README promises the demo user only until <data_dir>/users exists: a
// quickstart that is already running switches to the file as soon as it
// appears. It used to keep accepting demo/demo (SMTP AUTH through Postfix)
// until a restart: a SIGHUP does not reopen the directory, and nothing in the
// configuration had changed to say one was needed.
func TestQuickstartUsersFileAppearsWhileServing(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Directory.Static.CheckInterval = 0 // look on every lookup
	var logs bytes.Buffer
	a := &App{cfg: cfg, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	defer a.Close()
	ctx := context.Background()
	d, err := a.Directory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "demo@example.com", "demo"); err != nil {
		t.Fatalf("demo user before the users file exists: %v", err)
	}

	// A file that does not parse is not taken: the demo users stay.
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("broken line without fields\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "demo@example.com", "demo"); err != nil {
		t.Fatalf("demo user with an unparsable users file: %v", err)
	}
	if !bytes.Contains(logs.Bytes(), []byte("still serving the embedded demo users")) {
		t.Errorf("the unparsable users file was not reported:\n%s", logs.String())
	}

	if err := os.WriteFile(users, []byte("alice@example.com:{PLAIN}secret:8:8::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "demo@example.com", "demo"); err == nil {
		t.Fatal("demo/demo still accepted after <data_dir>/users was created")
	}
	if _, err := d.Authenticate(ctx, "alice@example.com", "secret"); err != nil {
		t.Fatalf("user of the new users file: %v", err)
	}
	if _, err := d.LookupAddress(ctx, "alice@example.com"); err != nil {
		t.Fatalf("LookupAddress of the new users file: %v", err)
	}
	if sr, ok := d.(directory.SecretReader); !ok {
		t.Error("the directory lost StoredPassword (CRAM-MD5/SCRAM)")
	} else if _, data, _, err := sr.StoredPassword(ctx, "alice@example.com"); err != nil || data != "secret" {
		t.Errorf("StoredPassword = %q, %v", data, err)
	}
	// From now on it is an ordinary users file, reloaded when it changes.
	if err := os.WriteFile(users, []byte("bob@example.com:{PLAIN}pw:8:8::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "bob@example.com", "pw"); err != nil {
		t.Fatalf("edited users file: %v", err)
	}
	if !bytes.Contains(logs.Bytes(), []byte("demo users are no longer served")) {
		t.Errorf("no log line says the demo users are gone:\n%s", logs.String())
	}
}

// A users file that failed to load is tried again when its owner or mode
// changes, not only its contents: one the daemon could not read (wrong owner
// or mode) must load once the admin fixes that, and chmod and chown leave
// size and mtime alone.
func TestQuickstartRetriesAfterChmod(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte("x\n"), 0o000); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Stat(p); !sameFile(again, before) {
		t.Fatal("an unchanged file does not compare the same")
	}
	time.Sleep(10 * time.Millisecond) // ctime has ns resolution, but filesystems tick coarser
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if sameFile(after, before) {
		t.Error("a chmod leaves the failed file looking unchanged: it is never tried again")
	}
}
