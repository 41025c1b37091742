package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/milter"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/authcheck"
)

// newMilterCmd runs the spam-scoring milter alone.
func newMilterCmd(app *App) *cobra.Command {
	return asDaemon(&cobra.Command{
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
	})
}

// milterEngine builds the scoring engine of cfg with the authentication and
// DNS-list checks, which only make sense with an SMTP envelope (so `score` has
// none); its metrics go to reg.
func milterEngine(ctx context.Context, app *App, cfg *Config, reg prometheus.Registerer) (*spam.Engine, error) {
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
	return newSpamEngine(ctx, app, cfg.Spam, false, spam.WithChecks(checks...), spam.WithRegistry(reg), spam.WithAuthservIDs(ownAuthservIDs(ctx, app)...))
}

// buildMilter builds the milter from the config; `serve` and `milter` both use it.
func buildMilter(ctx context.Context, app *App) (*unit, error) {
	cfg := app.Config()
	em := &engineMetrics{reg: app.registerer()}
	var built collected
	e, err := milterEngine(ctx, app, cfg, &built)
	if err != nil {
		return nil, fmt.Errorf("spam engine: %w", err)
	}
	em.swap(built)
	srv, err := milter.New(cfg.Milter, e, app.Log.With("daemon", "milter"), app.Registry)
	if err != nil {
		return nil, err
	}
	return &unit{
		Unit: daemon.Unit{Name: "milter", Listener: cfg.Milter.Listen, Service: srv},
		// The engine is rebuilt completely before anything is swapped; on any
		// error the running engine and settings stay.
		prepare: func(ctx context.Context, next *Config) (staged, error) {
			mc := next.Milter
			if err := mc.Validate(); err != nil {
				return staged{}, err
			}
			var built collected
			e, err := milterEngine(ctx, app, next, &built)
			if err != nil {
				return staged{}, fmt.Errorf("spam engine: %w", err)
			}
			return staged{commit: func() {
				// Restart-only settings arrive as running (see reloader), so
				// ErrRestartNeeded is not expected either.
				if err := srv.Reload(mc); err != nil && !errors.Is(err, milter.ErrRestartNeeded) {
					app.Log.Error("milter reload", "err", err)
				}
				srv.SetScorer(e)
				em.swap(built)
			}}, nil
		},
	}, nil
}

// collected is a prometheus.Registerer that only records what is registered
// on it, so an engine built for a reload that may be refused registers
// nothing yet.
type collected []prometheus.Collector

func (c *collected) Register(x prometheus.Collector) error { *c = append(*c, x); return nil }

func (c *collected) MustRegister(xs ...prometheus.Collector) { *c = append(*c, xs...) }

func (c *collected) Unregister(x prometheus.Collector) bool {
	for i, y := range *c {
		if y == x {
			*c = append((*c)[:i], (*c)[i+1:]...)
			return true
		}
	}
	return false
}

// engineMetrics exports the metrics of the engine in use. The spam package
// registers an engine's collectors when the engine is built and skips names
// already registered, so an engine rebuilt on reload would count into
// collectors nobody exports; swap replaces the old engine's collectors with
// the new one's instead (its counters start again from zero, which
// Prometheus' rate() treats as a restart).
type engineMetrics struct {
	reg     prometheus.Registerer // nil: not exported (one-shot commands)
	current []prometheus.Collector
}

func (m *engineMetrics) swap(next []prometheus.Collector) {
	if m.reg == nil {
		return
	}
	for _, c := range m.current {
		m.reg.Unregister(c)
	}
	m.current = m.current[:0]
	for _, c := range next {
		if err := m.reg.Register(c); err == nil {
			m.current = append(m.current, c)
		}
	}
}
