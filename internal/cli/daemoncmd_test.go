package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// daemonCmd is one `dovetail -c FILE <daemon>` running in the test's process.
type daemonCmd struct {
	name   string
	app    *App
	logs   *testenv.LogBuffer
	done   chan error
	cancel context.CancelFunc
}

// startDaemonCmd writes cfg to a file, runs the daemon command name on it in
// the background and retries ready until it succeeds (the daemon listens),
// failing the test if the command exits or 10 s pass first.
func startDaemonCmd(t *testing.T, name, cfg string, ready func() error) *daemonCmd {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "dovetail.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	app := &App{Stdin: strings.NewReader(""), Stdout: logs, Stderr: logs}
	d := &daemonCmd{name: name, app: app, logs: logs, done: make(chan error, 1)}
	t.Cleanup(app.Close)
	root := newRootCmd(app)
	root.SetArgs([]string{"-c", cfgPath, name})
	root.SetOut(d.logs)
	root.SetErr(d.logs)
	var ctx context.Context
	ctx, d.cancel = context.WithCancel(context.Background())
	t.Cleanup(d.cancel)
	go func() { d.done <- root.ExecuteContext(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := ready()
		if err == nil {
			return d
		}
		select {
		case err := <-d.done:
			t.Fatalf("%s exited: %v\n%s", name, err, d.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not get ready: %v\n%s", name, err, d.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop cancels the command and checks it ends cleanly within 15 s.
func (d *daemonCmd) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		d.app.flushLog() // as Main's App.Close does on the way out
		if err != nil {
			t.Fatalf("%s: %v\n%s", d.name, err, d.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not stop", d.name)
	}
}

// testUsers is a users file for the daemons under test: a config file with a
// static directory needs one (the demo users are for the embedded default only).
const testUsers = "alice@example.com:{PLAIN}secret:1000:1000::/nonexistent/alice::\nbob@example.com:{PLAIN}secret:1000:1000::/nonexistent/bob::\n"

// writeUsers writes testUsers as <dataDir>/users.
func writeUsers(t *testing.T, dataDir string) {
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "users"), []byte(testUsers), 0o600); err != nil {
		t.Fatal(err)
	}
}

// usersDataDir is a new data dir holding testUsers.
func usersDataDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	writeUsers(t, d)
	return d
}
