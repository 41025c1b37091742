package cli

import (
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// Info lines linger (daemon.LogLinger) and App.Close writes them; a warning
// is written at once, with every line before it.
func TestLogLinesWrittenByWarningAndClose(t *testing.T) {
	_, cfg := configInDataDir(t, "")
	logs := &testenv.LogBuffer{}
	app := &App{ConfigPath: cfg, Stdin: strings.NewReader(""), Stdout: logs, Stderr: logs}
	if err := app.load(); err != nil {
		t.Fatal(err)
	}
	app.logs = newLogSwitch(logs, app.Config().Log, 1<<62) // a linger no test outwaits
	app.Log = app.logs.logger()
	app.Log.Info("first")
	if got := logs.String(); got != "" {
		t.Fatalf("an info line was written at once: %q", got)
	}
	app.Log.With("daemon", "policyd").Warn("second")
	if got := logs.String(); !strings.Contains(got, "msg=first") || !strings.Contains(got, "msg=second daemon=policyd") {
		t.Fatalf("after a warning: %q", got)
	}
	app.Log.Info("third")
	app.Close()
	if got := logs.String(); !strings.Contains(got, "msg=third") {
		t.Fatalf("after Close: %q", got)
	}
}

// A one-shot command's log lines are written at once: its own output on
// stderr must not overtake them.
func TestOneShotCommandLogsAtOnce(t *testing.T) {
	_, cfg := configInDataDir(t, "")
	logs := &testenv.LogBuffer{}
	app := &App{Stdin: strings.NewReader(""), Stdout: logs, Stderr: logs}
	defer app.Close()
	root := newRootCmd(app)
	root.SetArgs([]string{"-c", cfg, "config", "show"})
	root.SetOut(logs)
	root.SetErr(logs)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	app.Log.Info("one-shot line")
	if !strings.Contains(logs.String(), "one-shot line") {
		t.Fatalf("a one-shot command's info line lingered: %q", logs.String())
	}
}
