package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/authd"
	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// newAuthdCmd runs the Dovecot-protocol SASL auth daemon alone.
func newAuthdCmd(app *App) *cobra.Command {
	return asDaemon(&cobra.Command{
		Use:   "authd",
		Short: "Run the SASL auth daemon for Postfix (Dovecot auth protocol) on the configured directory",
		Long: `Run only the auth service configured under 'authd:', answering from the
directory configured under 'directory:' (users file or LDAP). Point Postfix at it:
  smtpd_sasl_auth_enable = yes
  smtpd_sasl_type = dovecot
  smtpd_sasl_path = private/dovetail-auth     (authd.listen.address: unix:/var/spool/postfix/private/dovetail-auth)
  or smtpd_sasl_path = inet:127.0.0.1:12345  (authd.listen.address: 127.0.0.1:12345)
When the directory is unavailable the connection is closed, so Postfix answers
454 4.7.0 (try again later) instead of 535. SIGHUP re-reads the config and empties
the auth cache.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUnits(cmd.Context(), app, "authd")
		},
	})
}

// buildAuthd builds authd from the authd section on the shared directory;
// `serve` and `authd` both use it.
func buildAuthd(ctx context.Context, app *App) (*unit, error) {
	cfg := app.Config().Authd
	dir, err := app.Directory(ctx)
	if err != nil {
		return nil, fmt.Errorf("open the directory: %w", err)
	}
	srv, err := authd.New(cfg, dir, app.Log.With("daemon", "authd"), app.Registry)
	if err != nil {
		return nil, err
	}
	return &unit{
		Unit: daemon.Unit{Name: "authd", Listener: cfg.Listen, Service: srv},
		prepare: func(_ context.Context, next *Config) (staged, error) {
			c := next.Authd
			if err := c.Validate(); err != nil {
				return staged{}, err
			}
			return staged{commit: func() {
				if err := srv.Reload(c); err != nil { // validated above: not expected
					app.Log.Error("authd reload", "err", err)
				}
			}}, nil
		},
	}, nil
}
