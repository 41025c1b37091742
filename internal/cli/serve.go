package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// builder builds one daemon from the app's config and shared backends. Each
// daemon's file (authd.go, policyd.go, milter.go, lmtpd.go) defines one, and its
// own command runs it alone through runUnits.
type builder func(ctx context.Context, app *App) (*unit, error)

// unit is a daemon built from the config and how it takes a new one.
type unit struct {
	daemon.Unit
	// prepare builds the daemon's state for the configuration next without
	// touching the running one; nil when nothing of it can change live.
	prepare func(ctx context.Context, next *Config) (staged, error)
}

// staged is one daemon's prepared part of a reload.
type staged struct {
	// apply is for a daemon whose package builds and swaps in one call
	// (policyd): it runs once every daemon prepared successfully, before
	// anything else is swapped, and on failure the reload is refused with
	// nothing changed. Only one daemon uses it.
	apply func() error
	// commit swaps in what prepare built; it cannot fail.
	commit func()
}

func builders() map[string]builder {
	return map[string]builder{
		"authd":   buildAuthd,
		"policyd": buildPolicyd,
		"milter":  buildMilter,
		"lmtpd":   buildLmtpd,
	}
}

func newServeCmd(app *App) *cobra.Command {
	return asDaemon(&cobra.Command{
		Use:   "serve",
		Short: "Run every daemon listed under 'daemons:' in one process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBuilt(cmd.Context(), app, builders(), app.Config().Daemons, true)
		},
	})
}

// runUnits builds the named daemons and runs them until SIGTERM/SIGINT.
func runUnits(ctx context.Context, app *App, names ...string) error {
	return runBuilt(ctx, app, builders(), names, false)
}

// runBuilt builds names with bs and runs them; serve says the list came from
// `daemons:` (so a change to it needs a restart).
func runBuilt(ctx context.Context, app *App, bs map[string]builder, names []string, serve bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	sigs := app.signals
	if sigs == nil { // run without the root command (tests): catch them now
		sigs, ctx = daemon.CatchSignals(ctx)
		app.signals = sigs
	}
	defer sigs.Stop()
	app.mu.Lock()
	app.serving = true
	app.mu.Unlock()
	var units []*unit
	for _, n := range names {
		b, ok := bs[n]
		if !ok {
			return fmt.Errorf("unknown daemon %q", n)
		}
		u, err := b(ctx, app)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		units = append(units, u)
	}
	cfg := app.Config()
	gcPercent, memLimit := tuneGC(cfg.Runtime)
	rt := &daemon.Runtime{
		Log:         app.Log,
		MetricsAddr: cfg.Metrics.Listen,
		Gatherer:    app.Registry,
		Registerer:  app.Registry,
		Grace:       cfg.ShutdownGrace.D(),
		Signals:     sigs,
		Checks:      app.readyChecks(),
		Ready:       app.ready,
	}
	for _, u := range units {
		rt.Units = append(rt.Units, u.Unit)
	}
	r := &reloader{app: app, rt: rt, units: units, started: cfg, names: names, serve: serve}
	rt.Reload = r.reload
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
