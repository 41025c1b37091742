package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/lmtpd"
	"github.com/dovetail-mail/dovetail/quarantine"
)

func newLmtpdCmd(app *App) *cobra.Command {
	return asDaemon(&cobra.Command{
		Use:   "lmtpd",
		Short: "Run the LMTP delivery agent (Maildir, Sieve, quarantine) alone",
		Long: "lmtpd takes mail from Postfix over LMTP (virtual_transport = lmtp:unix:...),\n" +
			"looks recipients up in the directory, runs Sieve and writes Dovecot-compatible Maildir.\n" +
			"SIGHUP re-reads the config and applies it to the next transactions; listen, also_listen,\n" +
			"hostname, max_message_size, read_timeout, write_timeout and quarantine need a restart.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUnits(cmd.Context(), app, "lmtpd")
		},
	})
}

// buildLmtpd is the builder `serve` and `lmtpd` share.
func buildLmtpd(ctx context.Context, app *App) (*unit, error) {
	c := app.Config()
	if c.Lmtpd.Listen.Address == "" {
		return nil, fmt.Errorf("lmtpd.listen.address is empty")
	}
	q, err := openQuarantine(app)
	if err != nil {
		return nil, err
	}
	o, err := lmtpOptions(ctx, app, c, q)
	if err != nil {
		return nil, err
	}
	o.Registerer = app.Registry
	srv, err := lmtpd.New(o)
	if err != nil {
		return nil, err
	}
	return &unit{
		Unit: daemon.Unit{Name: "lmtpd", Listener: c.Lmtpd.Listen, Service: srv},
		// The pipeline (Sieve filter, sender, settings) is built before
		// anything is swapped; the quarantine opened at start stays.
		prepare: func(ctx context.Context, next *Config) (staged, error) {
			o, err := lmtpOptions(ctx, app, next, q)
			if err != nil {
				return staged{}, err
			}
			return staged{commit: func() {
				if err := srv.Reload(o); err != nil { // o has a directory: not expected
					app.Log.Error("lmtpd reload", "err", err)
				}
			}}, nil
		},
	}, nil
}

// lmtpOptions builds what the delivery pipeline of c needs. The store is
// optional: without it vacation and duplicate suppression are off (logged),
// mail still flows.
func lmtpOptions(ctx context.Context, app *App, c *Config, q *quarantine.Store) (lmtpd.Options, error) {
	dv, err := lmtpDeps(ctx, app, c, q)
	if err != nil {
		return lmtpd.Options{}, err
	}
	return lmtpd.Options{
		Config: c.Lmtpd, Directory: dv.Directory, Store: dv.Store, Filter: dv.Filter, Quarantine: q,
		Sender: dv.Sender, Logger: dv.Logger,
	}, nil
}

// lmtpDeps opens what the delivery pipeline of c needs, on the quarantine q.
// The store is optional: without it vacation and duplicate suppression are off
// (logged), mail still flows.
func lmtpDeps(ctx context.Context, app *App, c *Config, q *quarantine.Store) (*lmtpd.Deliverer, error) {
	cfg := c.Lmtpd
	log := app.Log.With("daemon", "lmtpd")
	dir, err := app.Directory(ctx)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	dv := &lmtpd.Deliverer{Config: cfg, Directory: dir, Logger: log, Quarantine: q}
	if st, err := app.Store(ctx); err == nil {
		dv.Store = st
	} else {
		log.Warn("no state store: vacation and duplicate suppression are off", "error", err)
	}
	if dv.Sender, err = lmtpd.NewSender(cfg.Submission, cfg.Hostname); err != nil {
		return nil, err
	}
	if cfg.Sieve.Enabled {
		dv.Filter = lmtpd.NewSieveFilter(cfg.Sieve, cfg.RecipientDelimiter, vacationSettings(cfg), log)
	}
	return dv, nil
}

// openQuarantine opens the quarantine (default dir: <data_dir>/quarantine) once per
// process; App.Close closes it.
func openQuarantine(app *App) (*quarantine.Store, error) {
	qc := app.Config().Quarantine
	qc.Dir = quarantineDir(app)
	q, err := quarantine.Open(qc)
	if err != nil {
		return nil, err
	}
	app.onClose(q.Close)
	return q, nil
}

// quarantineDir is quarantine.dir, by default <data_dir>/quarantine.
func quarantineDir(app *App) string {
	c := app.Config()
	if c.Quarantine.Dir != "" {
		return c.Quarantine.Dir
	}
	return filepath.Join(c.DataDir, "quarantine")
}

// vacationSettings hands lmtpd.vacation's period bounds to the Sieve
// interpreter, which applies Pigeonhole's sieve_vacation_* settings (1 to 60
// days by default) before lmtpd sees the period: without them a max_period of
// 90d or a min_period below a day had no effect. Explicit entries in
// lmtpd.sieve.settings still win.
func vacationSettings(cfg lmtpd.Config) map[string]string {
	secs := func(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) + "s" }
	v := cfg.Vacation
	// 0 means no bound in both places (sieve checks max only when > 0).
	s := map[string]string{
		"sieve_vacation_min_period": secs(v.MinPeriod.D()),
		"sieve_vacation_max_period": secs(v.MaxPeriod.D()),
	}
	if v.DefaultPeriod > 0 {
		s["sieve_vacation_default_period"] = secs(v.DefaultPeriod.D())
	}
	for k, val := range cfg.Sieve.Settings {
		s[k] = val
	}
	return s
}
