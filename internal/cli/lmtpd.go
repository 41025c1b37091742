package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/lmtpd"
	"github.com/dovetail-mail/dovetail/quarantine"
)

func newLmtpdCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "lmtpd",
		Short: "Run the LMTP delivery agent (Maildir, Sieve, quarantine) alone",
		Long: "lmtpd takes mail from Postfix over LMTP (virtual_transport = lmtp:unix:...),\n" +
			"looks recipients up in the directory, runs Sieve and writes Dovecot-compatible Maildir.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUnits(cmd.Context(), app, "lmtpd")
		},
	}
}

// buildLmtpd is the builder `serve` and `lmtpd` share.
func buildLmtpd(ctx context.Context, app *App) (*daemon.Unit, error) {
	cfg := app.Config().Lmtpd
	if cfg.Listen.Address == "" {
		return nil, fmt.Errorf("lmtpd.listen.address is empty")
	}
	dv, q, err := lmtpDeps(ctx, app)
	if err != nil {
		return nil, err
	}
	srv, err := lmtpd.New(lmtpd.Options{
		Config: cfg, Directory: dv.Directory, Store: dv.Store, Filter: dv.Filter, Quarantine: q,
		Sender: dv.Sender, Logger: dv.Logger, Registerer: app.Registry,
	})
	if err != nil {
		return nil, err
	}
	return &daemon.Unit{Name: "lmtpd", Listener: cfg.Listen, Service: srv}, nil
}

// lmtpDeps opens what the delivery pipeline needs. The store is optional: without
// it vacation and duplicate suppression are off (logged), mail still flows.
func lmtpDeps(ctx context.Context, app *App) (*lmtpd.Deliverer, *quarantine.Store, error) {
	c := app.Config()
	cfg := c.Lmtpd
	log := app.Log.With("daemon", "lmtpd")
	dir, err := app.Directory(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("directory: %w", err)
	}
	dv := &lmtpd.Deliverer{Config: cfg, Directory: dir, Logger: log}
	if st, err := app.Store(ctx); err == nil {
		dv.Store = st
	} else {
		log.Warn("no state store: vacation and duplicate suppression are off", "error", err)
	}
	q, err := openQuarantine(app)
	if err != nil {
		return nil, nil, err
	}
	dv.Quarantine = q
	if dv.Sender, err = lmtpd.NewSender(cfg.Submission); err != nil {
		return nil, nil, err
	}
	if cfg.Sieve.Enabled {
		dv.Filter = lmtpd.NewSieveFilter(cfg.Sieve, cfg.RecipientDelimiter, nil, log)
	}
	return dv, q, nil
}

// openQuarantine opens the quarantine (default dir: <data_dir>/quarantine) once per
// process; App.Close closes it.
func openQuarantine(app *App) (*quarantine.Store, error) {
	c := app.Config()
	qc := c.Quarantine
	if qc.Dir == "" {
		qc.Dir = filepath.Join(c.DataDir, "quarantine")
	}
	q, err := quarantine.Open(qc)
	if err != nil {
		return nil, err
	}
	app.onClose(q.Close)
	return q, nil
}
