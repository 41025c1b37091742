package cli

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// builder builds one daemon from the app's config and shared backends. Each
// daemon's file (authd.go, policyd.go, milter.go, lmtpd.go) defines one, and its
// own command runs it alone through runUnits.
type builder func(ctx context.Context, app *App) (*daemon.Unit, error)

func builders() map[string]builder {
	return map[string]builder{
		"authd":   buildAuthd,
		"policyd": buildPolicyd,
		"milter":  buildMilter,
		"lmtpd":   buildLmtpd,
	}
}

func newServeCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run every daemon listed under 'daemons:' in one process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUnits(cmd.Context(), app, app.Config().Daemons...)
		},
	}
}

// runUnits builds the named daemons and runs them until SIGTERM/SIGINT.
func runUnits(ctx context.Context, app *App, names ...string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	bs := builders()
	var units []daemon.Unit
	for _, n := range names {
		b, ok := bs[n]
		if !ok {
			return fmt.Errorf("unknown daemon %q", n)
		}
		u, err := b(ctx, app)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		units = append(units, *u)
	}
	cfg := app.Config()
	gcPercent, memLimit := tuneGC(cfg.Runtime)
	rt := &daemon.Runtime{
		Log:         app.Log,
		Units:       units,
		MetricsAddr: cfg.Metrics.Listen,
		Gatherer:    app.Registry,
		Grace:       cfg.ShutdownGrace.D(),
		Reload:      app.ReloadConfig,
	}
	app.Log.Info("dovetail starting", "daemons", names, "config", configName(app.ConfigPath), "data_dir", cfg.DataDir,
		"gc_percent", gcPercent, "memory_limit", memLimit)
	return rt.Run(ctx)
}

func configName(p string) string {
	if p == "" {
		return "(embedded default)"
	}
	return p
}
