package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

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
