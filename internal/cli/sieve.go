package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/sieve"
)

// Exit codes of `dovetail sieve`.
const (
	sieveExitOK      = 0
	sieveExitRuntime = 1 // check: some script failed to compile; test: runtime error
	sieveExitCompile = 2 // test: a script failed to compile
)

const sieveHelp = `Compile and try Sieve scripts with dovetail's interpreter.

  dovetail sieve check SCRIPT...          print every error as file:line:col: message
  dovetail sieve test [flags] SCRIPT MSG  run SCRIPT (with --before/--after scripts)
                                          against the message file MSG and print the actions

check exits 1 when any script has errors. test exits 2 on compile errors and 1
on runtime errors (the actions taken, including the implicit keep Pigeonhole
performs on failure, are still printed).`

func newSieveCmd(_ *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sieve",
		Short: "Check and test Sieve scripts",
		Long:  sieveHelp,
	}
	cmd.AddCommand(noConfig(newSieveCheckCmd()), noConfig(newSieveTestCmd()))
	return noConfig(cmd)
}

func newSieveCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check SCRIPT...",
		Short: "Compile Sieve scripts and report every error",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sieveCheck(cmd.OutOrStdout(), args)
		},
	}
}

// sieveCheck compiles every script and prints its errors.
func sieveCheck(out io.Writer, paths []string) error {
	failed := 0
	for _, p := range paths {
		if _, err := compileSieveFile(p); err != nil {
			failed++
			printSieveCompileError(out, p, err)
		}
	}
	if failed > 0 {
		return &ExitError{Code: sieveExitRuntime}
	}
	return nil
}

func printSieveCompileError(out io.Writer, path string, err error) {
	var ce *sieve.CompileError
	if errors.As(err, &ce) {
		for _, e := range ce.Errors {
			fmt.Fprintf(out, "%s:%d:%d: %s\n", path, e.Line, e.Col, e.Msg)
		}
		return
	}
	fmt.Fprintf(out, "%s: %v\n", path, err)
}

// dirLoader resolves include :personal from the including script's
// directory and include :global from globalDir.
type dirLoader struct{ personal, global string }

func (d dirLoader) LoadScript(loc sieve.IncludeLocation, name string) ([]byte, error) {
	dir := d.personal
	if loc == sieve.Global {
		dir = d.global
	}
	if dir == "" || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		return nil, sieve.ErrScriptNotFound
	}
	for _, fn := range []string{name + ".sieve", name} {
		b, err := os.ReadFile(filepath.Join(dir, fn))
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return nil, sieve.ErrScriptNotFound
}

func compileSieveFile(path string) (*sieve.Script, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return sieve.Compile(path, src, &sieve.Options{Includes: dirLoader{personal: filepath.Dir(path), global: os.Getenv("DOVETAIL_SIEVE_GLOBAL_DIR")}})
}

type sieveTestOpts struct {
	from, to, origTo string
	before, after    []string
	json             bool
	config           map[string]string
}

func newSieveTestCmd() *cobra.Command {
	var o sieveTestOpts
	var cfg []string
	cmd := &cobra.Command{
		Use:   "test [flags] SCRIPT MESSAGE",
		Short: "Run Sieve script(s) against a message file and print the actions",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.config = map[string]string{}
			for _, kv := range cfg {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return &ExitError{Code: sieveExitCompile, Err: fmt.Errorf("--set %q: want key=value", kv)}
				}
				o.config[k] = v
			}
			return sieveTest(cmd.Context(), cmd.OutOrStdout(), args[0], args[1], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "sender@example.com", "envelope sender (MAIL FROM); empty for the null sender")
	f.StringVar(&o.to, "to", "recipient@example.com", "envelope recipient (RCPT TO)")
	f.StringVar(&o.origTo, "orig-to", "", "original envelope recipient")
	f.StringArrayVar(&o.before, "before", nil, "sieve_before script (repeatable, run in order)")
	f.StringArrayVar(&o.after, "after", nil, "sieve_after script (repeatable, run in order)")
	f.BoolVar(&o.json, "json", false, "print one JSON object on stdout")
	f.StringArrayVar(&cfg, "set", nil, "Pigeonhole-style setting key=value (e.g. recipient_delimiter=+)")
	return cmd
}

// sieveJSONAction is one action of `sieve test --json`; every field is
// always present (flags is [] when there are none) so consumers see one
// stable schema.
type sieveJSONAction struct {
	Type     string   `json:"type"`
	Mailbox  string   `json:"mailbox"`
	Flags    []string `json:"flags"`
	Copy     bool     `json:"copy"`
	Create   bool     `json:"create"`
	Address  string   `json:"address"`
	Reason   string   `json:"reason"`
	Subject  string   `json:"subject"`
	Implicit bool     `json:"implicit"`
}

type sieveJSONResult struct {
	Actions []sieveJSONAction `json:"actions"`
	Errors  []string          `json:"errors"`
}

func sieveTest(ctx context.Context, out io.Writer, scriptPath, msgPath string, o sieveTestOpts) error {
	if ctx == nil {
		ctx = context.Background()
	}
	var compileErrs []string
	load := func(paths []string) []*sieve.Script {
		var out []*sieve.Script
		for _, p := range paths {
			s, err := compileSieveFile(p)
			if err != nil {
				var ce *sieve.CompileError
				if errors.As(err, &ce) {
					for _, e := range ce.Errors {
						compileErrs = append(compileErrs, fmt.Sprintf("%s:%d:%d: %s", p, e.Line, e.Col, e.Msg))
					}
				} else {
					compileErrs = append(compileErrs, fmt.Sprintf("%s: %v", p, err))
				}
				continue
			}
			out = append(out, s)
		}
		return out
	}
	before := load(o.before)
	users := load([]string{scriptPath})
	after := load(o.after)
	if len(compileErrs) > 0 {
		if o.json {
			_ = writeJSON(out, sieveJSONResult{Actions: []sieveJSONAction{}, Errors: compileErrs})
		} else {
			for _, e := range compileErrs {
				fmt.Fprintln(out, e)
			}
		}
		return &ExitError{Code: sieveExitCompile}
	}
	raw, err := os.ReadFile(msgPath)
	if err != nil {
		return &ExitError{Code: sieveExitRuntime, Err: err}
	}
	env := &sieve.Env{
		Message:  sieve.NewMessage(raw),
		Envelope: sieve.Envelope{From: o.from, To: o.to, OrigTo: o.origTo},
		Config:   o.config,
	}
	res, runErr := sieve.RunMulti(ctx, env, before, users[0], after)
	jr := sieveJSONResult{Actions: []sieveJSONAction{}, Errors: []string{}}
	if res != nil {
		for _, a := range res.Actions {
			ja := sieveJSONAction{Type: a.Type, Mailbox: a.Mailbox, Flags: a.Flags, Copy: a.Copy, Create: a.Create, Address: a.Address, Reason: a.Reason, Subject: a.Subject, Implicit: a.Implicit}
			if ja.Flags == nil {
				ja.Flags = []string{}
			}
			if a.Type == "vacation" && len(a.Addresses) > 0 && ja.Address == "" {
				ja.Address = strings.Join(a.Addresses, ",")
			}
			switch a.Type {
			case "notify":
				ja.Address = a.Method
			case "report": // vnd.dovecot.report: the text as reason
				ja.Reason = a.Message
			}
			jr.Actions = append(jr.Actions, ja)
		}
		for _, e := range res.Errors {
			jr.Errors = append(jr.Errors, e.Error())
		}
	}
	if runErr != nil && len(jr.Errors) == 0 {
		jr.Errors = append(jr.Errors, runErr.Error())
	}
	if o.json {
		if err := writeJSON(out, jr); err != nil {
			return err
		}
	} else {
		for _, a := range jr.Actions {
			fmt.Fprintln(out, formatSieveAction(a))
		}
		for _, e := range jr.Errors {
			fmt.Fprintln(out, "error:", e)
		}
	}
	if runErr != nil {
		return &ExitError{Code: sieveExitRuntime}
	}
	return nil
}

func formatSieveAction(a sieveJSONAction) string {
	var b strings.Builder
	b.WriteString(a.Type)
	if a.Mailbox != "" {
		fmt.Fprintf(&b, " %q", a.Mailbox)
	}
	if a.Address != "" {
		fmt.Fprintf(&b, " %s", a.Address)
	}
	if len(a.Flags) > 0 {
		fmt.Fprintf(&b, " flags=%s", strings.Join(a.Flags, " "))
	}
	if a.Copy {
		b.WriteString(" :copy")
	}
	if a.Create {
		b.WriteString(" :create")
	}
	if a.Subject != "" {
		fmt.Fprintf(&b, " subject=%q", a.Subject)
	}
	if a.Reason != "" {
		r := a.Reason
		if len(r) > 60 {
			r = r[:60] + "..."
		}
		fmt.Fprintf(&b, " reason=%q", r)
	}
	if a.Implicit {
		b.WriteString(" (implicit)")
	}
	return b.String()
}
