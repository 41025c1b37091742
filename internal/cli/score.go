package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/spam"
)

// spamConfig returns the spam section of the loaded config.
func spamConfig(app *App) spam.Config {
	if c := app.Config(); c != nil {
		return c.Spam
	}
	return spam.DefaultConfig()
}

// spamEngine builds an engine on the config's store; without a store (not
// configured or unavailable) scoring runs without Bayes when optional.
func spamEngine(ctx context.Context, app *App, needStore bool, extra ...spam.Option) (*spam.Engine, error) {
	return newSpamEngine(ctx, app, spamConfig(app), needStore, extra...)
}

// newSpamEngine is spamEngine for the spam section cfg (a reload's).
func newSpamEngine(ctx context.Context, app *App, cfg spam.Config, needStore bool, extra ...spam.Option) (*spam.Engine, error) {
	opts := append([]spam.Option(nil), extra...)
	if app.Log != nil {
		opts = append(opts, spam.WithLogger(app.Log))
	}
	if cfg.Bayes.Enabled {
		st, err := app.Store(ctx)
		switch {
		case err == nil:
			opts = append(opts, spam.WithStore(st))
		case needStore:
			return nil, fmt.Errorf("open the Bayes store: %w", err)
		default:
			fmt.Fprintf(app.Stderr, "warning: Bayes off, the store cannot be opened: %v\n", err)
		}
	}
	return spam.New(cfg, opts...)
}

// scoreResult is one line of `score --json`.
type scoreResult struct {
	File    string        `json:"file"`
	Score   float64       `json:"score"`
	Action  spam.Action   `json:"action"`
	Symbols []spam.Symbol `json:"symbols"`
}

func newScoreCmd(app *App) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "score [--json] [FILE...]",
		Short: "Score messages with the spam engine (stdin when no file is given)",
		Long: `Score RFC 5322 messages offline with the configured rules and Bayes state.
Prints score, action and symbols; with --json one object per message per line:
{"file":..,"score":..,"action":..,"symbols":[{"name":..,"score":..}]}.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			e, err := spamEngine(ctx, app, false)
			if err != nil {
				return err
			}
			return runScore(ctx, e, args, app.Stdin, app.Stdout, app.Stderr, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per message per line")
	return c
}

// runScore scores files (or stdin as "-") and writes the report to out; a
// file that cannot be read is reported on errOut and the others are scored.
func runScore(ctx context.Context, e *spam.Engine, files []string, stdin io.Reader, out, errOut io.Writer, asJSON bool) error {
	if len(files) == 0 {
		files = []string{"-"}
	}
	enc := json.NewEncoder(out)
	failed := 0
	for _, f := range files {
		r, closeFile, err := openScoreInput(f, stdin)
		if err != nil {
			fmt.Fprintf(errOut, "score: %v\n", err)
			failed++
			continue
		}
		v, err := e.Score(ctx, &spam.Input{Raw: r})
		closeFile() // now, not at the end: `score /spool/*.eml` opens thousands
		if err != nil {
			return fmt.Errorf("score %s: %w", f, err)
		}
		if asJSON {
			syms := make([]spam.Symbol, len(v.Symbols))
			for i, s := range v.Symbols {
				syms[i] = spam.Symbol{Name: s.Name, Score: s.Score}
			}
			if err := enc.Encode(scoreResult{File: f, Score: v.Score, Action: v.Action, Symbols: syms}); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(out, "%s: score=%.1f required=%.1f action=%s\n", f, v.Score, v.Required, v.Action)
		for _, s := range v.Symbols {
			fmt.Fprintf(out, "  %6.2f %-22s %s\n", s.Score, s.Name, s.Description)
		}
	}
	if failed > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%d file(s) could not be read", failed)}
	}
	return nil
}

// openScoreInput opens a file to score, or returns stdin for "-".
func openScoreInput(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}
