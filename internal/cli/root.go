// Package cli holds dovetail's cobra commands. Each command parses flags and
// calls plain functions; it only wires configuration into packages.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// ExitError carries a process exit code out of a command. Commands return
// &ExitError{Code: 2, Err: err}; Main prints Err (if any) and exits with Code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Main runs the dovetail command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := &App{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	defer app.Close()
	root := newRootCmd(app)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	app.flushLog() // the lines that led to the error come before it
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(stderr, "dovetail:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(stderr, "dovetail:", err)
	if errors.Is(err, config.ErrInvalid) {
		return 78 // EX_CONFIG, as sysexits.h
	}
	return 1
}

func newRootCmd(app *App) *cobra.Command {
	root := &cobra.Command{
		Use:           "dovetail",
		Short:         "Mail-server logic beside Postfix and Dovecot: milter, LMTP+Sieve, SASL auth, policy",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if app.ConfigPath == "" {
				app.ConfigPath = os.Getenv("DOVETAIL_CONFIG")
			}
			if cmd.Annotations["noconfig"] == "true" {
				return nil
			}
			if cmd.Annotations["daemon"] == "true" && app.signals == nil {
				// Before the config is read and backends are opened, which
				// takes a while: a SIGHUP (systemctl reload) meanwhile must
				// not kill the daemon (daemon.Signals).
				sigs, ctx := daemon.CatchSignals(cmd.Context())
				app.signals = sigs
				app.onClose(func() error { sigs.Stop(); return nil })
				cmd.SetContext(ctx)
			}
			// Log lines linger only in daemons, where a line per request
			// costs a write each: a one-shot command's lines and its own
			// output on stderr must come out in the order they were made.
			app.lingerLogs = cmd.Annotations["daemon"] == "true"
			return app.load()
		},
	}
	root.PersistentFlags().StringVarP(&app.ConfigPath, "config", "c", "", "config file (default: $DOVETAIL_CONFIG, else the embedded default)")
	root.AddCommand(
		newServeCmd(app),
		newConfigCmd(app),
		newVersionCmd(),
		newAuthdCmd(app),
		newPolicydCmd(app),
		newMilterCmd(app),
		newLmtpdCmd(app),
		newSieveCmd(app),
		newScoreCmd(app),
		newLearnCmd(app),
		newQuarantineCmd(app),
	)
	for _, c := range root.Commands() {
		strictGroups(c)
	}
	return root
}

// strictGroups makes every command group under c (config, sieve) fail on an
// unknown subcommand. Cobra runs a group without a Run of its own as "print
// the help, exit 0", which would let `dovetail config chek FILE && systemctl
// reload dovetail` go ahead unchecked; the group alone still prints its help.
func strictGroups(c *cobra.Command) {
	if !c.HasSubCommands() {
		return
	}
	if !c.Runnable() {
		c.Args = usageArgs(cobra.NoArgs)
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		strictGroups(sub)
	}
}

// asDaemon marks a command that runs daemons: signals are caught before its
// config is loaded.
func asDaemon(c *cobra.Command) *cobra.Command {
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations["daemon"] = "true"
	return c
}

// noConfig marks a command that does not need the config loaded.
func noConfig(c *cobra.Command) *cobra.Command {
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations["noconfig"] = "true"
	return c
}
