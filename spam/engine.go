package spam

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/spam/bayes"
	"github.com/dovetail-mail/dovetail/spam/message"
	"github.com/dovetail-mail/dovetail/spam/rules"
	ruleset "github.com/dovetail-mail/dovetail/spam/rules/default"
	"github.com/dovetail-mail/dovetail/store"
)

// Engine scores messages. It is safe for concurrent use.
type Engine struct {
	cfg        Config
	store      store.Store
	checks     []Check
	log        *slog.Logger
	reg        prometheus.Registerer
	now        func() time.Time
	extraRules []namedText

	rules    *rules.Set
	problems []rules.Problem
	bayes    *bayes.Classifier
	// tokenizer is kept apart from bayes so options can set it before New
	// decides whether Bayes is on.
	tokenizer bayes.Tokenizer
	allowNet  []netip.Prefix
	denyNet   []netip.Prefix
	m         metrics
}

type metrics struct {
	scans    *prometheus.CounterVec
	duration prometheus.Histogram
	errors   *prometheus.CounterVec
}

// New builds an engine: rules are loaded (problems are logged and available
// from Problems, never fatal), lists compiled, metrics registered.
func New(cfg Config, opts ...Option) (*Engine, error) {
	e := &Engine{cfg: cfg, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(e)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("spam: invalid config: %w", err)
	}
	// Domain names are case-insensitive: thresholds looks up the recipient's
	// domain in lower case, so the keys are lower-cased once here.
	if len(cfg.Domains) > 0 {
		e.cfg.Domains = make(map[string]Thresholds, len(cfg.Domains))
		for d, t := range cfg.Domains {
			e.cfg.Domains[strings.ToLower(d)] = t
		}
	}
	p := rules.NewParser(evalFuncs)
	if cfg.DefaultRules {
		names, _ := fs.Glob(ruleset.FS, "*.cf")
		sort.Strings(names)
		for _, n := range names {
			f, err := ruleset.FS.Open(n)
			if err != nil {
				return nil, fmt.Errorf("spam: default rules: %w", err)
			}
			err = p.Parse("default/"+n, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	for _, path := range cfg.RuleFiles {
		if err := parseRulePath(p, path); err != nil {
			return nil, err
		}
	}
	for _, t := range e.extraRules {
		if err := p.Parse(t.name, strings.NewReader(t.text)); err != nil {
			return nil, err
		}
	}
	e.rules = p.Build(cfg.Scores)
	e.problems = p.Problems
	for _, pr := range p.Problems {
		e.log.Warn("spam rule skipped", "problem", pr.String())
	}
	for _, n := range cfg.Allow.Networks {
		if pfx, err := parseNet(n); err == nil {
			e.allowNet = append(e.allowNet, pfx)
		}
	}
	for _, n := range cfg.Deny.Networks {
		if pfx, err := parseNet(n); err == nil {
			e.denyNet = append(e.denyNet, pfx)
		}
	}
	if e.store != nil && cfg.Bayes.Enabled {
		e.bayes = bayes.New(e.store, bayes.DefaultParams())
	}
	e.m = metrics{
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_spam_scans_total",
			Help: "Messages scanned, by action."}, []string{"action"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dovetail_spam_scan_seconds",
			Help: "Time to score one message.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_spam_check_errors_total",
			Help: "External check errors and panics, by check."}, []string{"check"}),
	}
	if e.reg != nil {
		for _, c := range []prometheus.Collector{e.m.scans, e.m.duration, e.m.errors} {
			if err := e.reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, fmt.Errorf("spam: metrics: %w", err)
				}
			}
		}
	}
	return e, nil
}

func parseRulePath(p *rules.Parser, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("spam: rules: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		files, _ = filepath.Glob(filepath.Join(path, "*.cf"))
		sort.Strings(files)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return fmt.Errorf("spam: rules: %w", err)
		}
		err = p.Parse(f, fh)
		fh.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Problems returns the rule-file problems found while loading (skipped rules).
func (e *Engine) Problems() []rules.Problem { return e.problems }

// Rules returns the compiled ruleset.
func (e *Engine) Rules() *rules.Set { return e.rules }

// NewBuilder returns a message Builder with the engine's limits (spill
// threshold, size cap), for callers that receive a message in chunks.
func (e *Engine) NewBuilder() *message.Builder { return message.NewBuilder(e.cfg.limits()) }

// Parse reads a raw message with the engine's limits.
func (e *Engine) Parse(r io.Reader) (*Message, error) { return message.Read(r, e.cfg.limits()) }

// Score scans one message. Errors are returned for an unreadable Input (I/O)
// and, unless bayes.on_unavailable is skip, for a Bayes store that cannot be
// read (wrapping store.ErrUnavailable): a temporary failure, not a verdict
// missing its strongest signal. Content problems and check failures (DNS) are
// symbols.
func (e *Engine) Score(ctx context.Context, in *Input) (Verdict, error) {
	start := time.Now()
	msg := in.Message
	if msg == nil {
		if in.Raw == nil {
			return Verdict{}, errors.New("spam: Input has neither Message nor Raw")
		}
		var err error
		msg, err = e.Parse(in.Raw)
		if err != nil {
			return Verdict{}, err
		}
		defer msg.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout.D())
	defer cancel()

	th := e.thresholds(in)
	v := Verdict{Bayes: BayesResult{Probability: -1}, Autolearn: "no"}
	if th.AddHeader != nil && *th.AddHeader > 0 {
		v.Required = *th.AddHeader
	}
	var syms []Symbol
	deny, allow := e.listHits(in, msg, false), e.listHits(in, msg, true)
	switch {
	case len(deny) > 0:
		syms = []Symbol{denySymbol(deny[0])}
		v.Reason = "deny list: " + deny[0].name
	case len(allow) > 0 && allow[0].addr == "":
		syms = []Symbol{allowSymbol(allow[0])}
		v.Reason = "allow list: " + allow[0].name
	default:
		var err error
		if syms, err = e.scan(ctx, in, msg, &v); err != nil {
			e.m.errors.WithLabelValues("bayes").Inc()
			return Verdict{}, err
		}
		// Sender and domain entries name identities anyone can write; they
		// apply only once the checks authenticated them.
		if h, ok := authenticatedHit(allow, syms); ok {
			syms = []Symbol{allowSymbol(h)}
			v.Reason = "allow list: " + h.name
			v.Bayes = BayesResult{Probability: -1}
		}
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].Name < syms[j].Name })
	v.Symbols = syms
	for _, s := range syms {
		v.Score += s.Score
	}
	v.Score = round1(v.Score)
	v.IsSpam = v.Required > 0 && v.Score >= v.Required
	v.Action = decide(v.Score, th)
	if v.Action == RewriteSubject {
		// One pass over the template: a "%d" in the message's own Subject
		// is its text, not a placeholder.
		v.Subject = strings.NewReplacer("%s", msg.Subject(), "%d", fmt.Sprintf("%.1f", v.Score)).Replace(e.cfg.SubjectTemplate)
	}
	// A scan that ran out of budget has a partial score: nothing to learn
	// from (and no budget left to learn with).
	if v.Reason == "" && ctx.Err() == nil {
		e.autolearn(ctx, in, msg, &v)
	}
	e.m.scans.WithLabelValues(string(v.Action)).Inc()
	e.m.duration.Observe(time.Since(start).Seconds())
	e.log.Debug("spam scan", "queue_id", in.QueueID, "score", v.Score, "action", v.Action, "symbols", len(v.Symbols))
	return v, nil
}

func round1(f float64) float64 {
	if f < 0 {
		return -round1(-f)
	}
	return float64(int64(f*100+0.5)) / 100
}

// scan runs checks (concurrently), rules and Bayes; its error is the Bayes
// store's (see BayesConfig.OnUnavailable).
func (e *Engine) scan(ctx context.Context, in *Input, msg *Message, v *Verdict) ([]Symbol, error) {
	var mu sync.Mutex
	var syms []Symbol
	var wg sync.WaitGroup
	for _, c := range e.checks {
		wg.Add(1)
		go func(c Check) {
			defer wg.Done()
			out := e.runCheck(ctx, c, in, msg)
			mu.Lock()
			syms = append(syms, out...)
			mu.Unlock()
		}(c)
	}
	// Bayes runs beside the rules, not after them: rules that use up the
	// budget must leave a partial verdict (SCAN_TIMEOUT) with Bayes in it,
	// not a store call on a spent context that fails the whole scan as
	// "Bayes store unavailable".
	var bayesSyms []Symbol
	var bayesErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A panic here (tokenizer, store client) is beyond the caller's
		// recover and would end the process: it fails the scan instead.
		defer func() {
			if p := recover(); p != nil {
				e.log.Error("bayes panicked", "queue_id", in.QueueID, "panic", p)
				bayesSyms, bayesErr = nil, fmt.Errorf("spam: Bayes panicked: %v", p)
			}
		}()
		bayesSyms, bayesErr = e.classify(ctx, in, msg, v)
	}()
	rc := &rules.Context{Msg: msg, Now: e.now(), Data: &scanData{in: in}}
	var local []Symbol
	for _, h := range e.rules.Run(ctx, rc) {
		if strings.HasPrefix(h.Rule.Name, "__") || h.Rule.Score == 0 && !strings.HasPrefix(h.Rule.Name, "T_") {
			continue
		}
		// A tflags multiple rule scores once per hit (up to its maxhits), as
		// in SpamAssassin.
		local = append(local, Symbol{Name: h.Rule.Name, Score: h.Rule.Score * float64(max(h.Count, 1)), Description: h.Rule.Description})
	}
	if ctx.Err() != nil {
		local = append(local, Symbol{Name: "SCAN_TIMEOUT", Description: "Scan budget exhausted; result is partial"})
	}
	if msg.Partial {
		local = append(local, Symbol{Name: "SCAN_PARTIAL", Description: "Only the start of a large message was scanned"})
	}
	wg.Wait()
	local = append(local, bayesSyms...)
	return append(syms, local...), bayesErr
}

func (e *Engine) runCheck(ctx context.Context, c Check, in *Input, msg *Message) (out []Symbol) {
	name := c.Name()
	defer func() {
		if r := recover(); r != nil {
			e.m.errors.WithLabelValues(name).Inc()
			e.log.Error("spam check panicked", "check", name, "panic", r)
			out = []Symbol{{Name: strings.ToUpper(name) + "_ERROR", Description: fmt.Sprintf("check %s panicked", name)}}
		}
	}()
	syms, err := c.Check(ctx, in, msg)
	if err != nil {
		e.m.errors.WithLabelValues(name).Inc()
		e.log.Warn("spam check failed", "check", name, "queue_id", in.QueueID, "err", err)
		syms = append(syms, Symbol{Name: strings.ToUpper(name) + "_ERROR", Description: "check failed: " + err.Error()})
	}
	return syms
}

// thresholds returns the action thresholds for the message's recipient domain.
func (e *Engine) thresholds(in *Input) Thresholds {
	d := strings.ToLower(in.Domain)
	if d == "" && len(in.Rcpts) > 0 {
		_, d, _ = strings.Cut(strings.ToLower(in.Rcpts[0]), "@")
	}
	if t, ok := e.cfg.Domains[d]; ok && d != "" {
		return t.merge(e.cfg.Actions)
	}
	return e.cfg.Actions
}

// decide picks the most severe action whose threshold the score reaches.
func decide(score float64, t Thresholds) Action {
	best := NoAction
	try := func(th *float64, a Action) {
		if th != nil && *th > 0 && score >= *th && a.severity() > best.severity() {
			best = a
		}
	}
	try(t.AddHeader, AddHeader)
	try(t.RewriteSubject, RewriteSubject)
	try(t.Greylist, Greylist)
	try(t.Reject, Reject)
	return best
}
