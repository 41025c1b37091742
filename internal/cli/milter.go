package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/milter"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/authcheck"
)

// newMilterCmd runs the spam-scoring milter alone.
func newMilterCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "milter",
		Short: "Run the spam-scoring milter for Postfix (reject, tempfail, X-Spam-* headers)",
		Long: `Run only the milter configured under 'milter:' with the engine under 'spam:'
and the SPF/DKIM/DMARC/DNSBL checks under 'authcheck:'. Point Postfix at it:
  smtpd_milters = inet:127.0.0.1:11332
  milter_default_action = tempfail
SIGHUP re-reads the config, rebuilds the engine (rules, thresholds, checks) and
applies the milter settings to the next messages; listen, request_macros and
skip_header_replies need a restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUnits(cmd.Context(), app, "milter")
		},
	}
}

// milterEngine builds the scoring engine with the authentication and DNS-list
// checks, which only make sense with an SMTP envelope (so `score` has none).
func milterEngine(ctx context.Context, app *App) (*spam.Engine, error) {
	cfg := app.Config()
	var checks []spam.Check
	ac, err := authcheck.New(cfg.Authcheck, nil)
	if err != nil {
		return nil, err
	}
	if cfg.Authcheck.SPF || cfg.Authcheck.DKIM {
		checks = append(checks, ac)
	}
	if len(cfg.Authcheck.DNSBL.Zones) > 0 {
		lc, err := authcheck.NewListCheck(cfg.Authcheck.DNSBL, nil)
		if err != nil {
			return nil, err
		}
		checks = append(checks, lc)
	}
	return spamEngine(ctx, app, false, spam.WithChecks(checks...))
}

// buildMilter builds the milter from the config; `serve` and `milter` both use it.
func buildMilter(ctx context.Context, app *App) (*daemon.Unit, error) {
	cfg := app.Config().Milter
	e, err := milterEngine(ctx, app)
	if err != nil {
		return nil, fmt.Errorf("spam engine: %w", err)
	}
	srv, err := milter.New(cfg, e, app.Log.With("daemon", "milter"), app.Registry)
	if err != nil {
		return nil, err
	}
	return &daemon.Unit{
		Name:     "milter",
		Listener: cfg.Listen,
		Service:  srv,
		// The engine is rebuilt completely before it is swapped in; on any
		// error the running one and the running settings stay.
		Reload: func(ctx context.Context) error {
			e, err := milterEngine(ctx, app)
			if err != nil {
				return err
			}
			err = srv.Reload(app.Config().Milter)
			if err != nil && !errors.Is(err, milter.ErrRestartNeeded) {
				return err
			}
			if err != nil {
				app.Log.Warn("milter reload", "err", err)
			}
			srv.SetScorer(e)
			return nil
		},
	}, nil
}
