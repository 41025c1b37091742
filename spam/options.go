package spam

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/store"
)

// Option configures an Engine.
type Option func(*Engine)

// WithStore sets the store holding Bayes token tables (no store = Bayes off).
func WithStore(st store.Store) Option { return func(e *Engine) { e.store = st } }

// WithChecks adds external checks (authcheck, dnsbl) run concurrently per scan.
func WithChecks(c ...Check) Option { return func(e *Engine) { e.checks = append(e.checks, c...) } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithRegistry registers the engine's metrics on r.
func WithRegistry(r prometheus.Registerer) Option { return func(e *Engine) { e.reg = r } }

// WithNow replaces the clock (date rules, tests).
func WithNow(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithRuleText adds rules in SpamAssassin syntax after the configured files
// (name is used in problem reports), for tests and embedding.
func WithRuleText(name, text string) Option {
	return func(e *Engine) { e.extraRules = append(e.extraRules, namedText{name, text}) }
}

type namedText struct{ name, text string }

// WithAuthservIDs names this host in Authentication-Results (the milter's
// authserv_id): Bayes leaves such fields out, as it does X-Spam-*, because
// dovetail added them and learning them would teach it its own verdicts.
func WithAuthservIDs(ids ...string) Option {
	return func(e *Engine) { e.tokenizer.AuthservIDs = append(e.tokenizer.AuthservIDs, ids...) }
}
