package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/policyd"
)

// newPolicydCmd runs the Postfix policy daemon alone.
func newPolicydCmd(app *App) *cobra.Command {
	return asDaemon(&cobra.Command{
		Use:   "policyd",
		Short: "Run the Postfix policy daemon (greylisting, rate limits, sender/login, SPF, DNSBL, countries)",
		Long: `Run only the Postfix SMTPD policy service configured under 'policyd:'.
Point Postfix at it after reject_unauth_destination, e.g.
  smtpd_recipient_restrictions = ..., reject_unauth_destination,
      check_policy_service { inet:127.0.0.1:10040, timeout=30s }
SIGHUP re-reads the config (and the GeoIP database) without dropping requests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUnits(cmd.Context(), app, "policyd")
		},
	})
}

// buildPolicyd builds the policy daemon from the config's policyd section, on
// the shared store and directory; `serve` and `policyd` both use it.
func buildPolicyd(ctx context.Context, app *App) (*unit, error) {
	cfg := app.Config().Policyd
	deps := policyd.Deps{Log: app.Log.With("daemon", "policyd"), Registerer: app.Registry}
	if cfg.NeedsStore() {
		st, err := app.Store(ctx)
		if err != nil {
			return nil, fmt.Errorf("open the store: %w", err)
		}
		deps.Store = st
	}
	if cfg.NeedsDirectory() {
		dir, err := app.Directory(ctx)
		if err != nil {
			return nil, fmt.Errorf("open the directory: %w", err)
		}
		deps.Directory = dir
	}
	srv, err := policyd.New(cfg, deps)
	if err != nil {
		return nil, err
	}
	return &unit{
		Unit: daemon.Unit{Name: "policyd", Listener: cfg.Listen, Service: srv},
		// policyd builds its new checks and swaps them in one call, keeping the
		// running ones on any error (a check needing a backend that was not
		// opened at start fails it): the reload's apply step.
		prepare: func(_ context.Context, next *Config) (staged, error) {
			c := next.Policyd
			return staged{apply: func() error { return srv.Reload(c) }}, nil
		},
	}, nil
}
