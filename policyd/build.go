package policyd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store"
)

// Resolver is the DNS the SPF and DNSBL checks use; *net.Resolver and
// go-mockdns's Resolver implement it.
type Resolver interface {
	spf.DNSResolver
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Deps are the Server's collaborators.
type Deps struct {
	// Store keeps greylist triplets and rate counters (SQLite or Redis); needed
	// when greylisting or rate limits are enabled.
	Store store.Store
	// Directory answers recipient and sender/login lookups; needed when those
	// checks are enabled.
	Directory directory.Lookup
	// Resolver defaults to net.DefaultResolver.
	Resolver Resolver
	// Log defaults to slog.Default(); Registerer nil means no metrics export.
	Log        *slog.Logger
	Registerer prometheus.Registerer
	// Now defaults to time.Now (tests drive greylisting with it).
	Now func() time.Time
}

// build turns a configuration into an engine: validate, open what the checks
// need, and fail without side effects on any problem (Reload keeps the old one).
func build(cfg Config, d Deps, log *slog.Logger, m *metrics) (*engine, error) {
	if err := config.Validate("policyd", &cfg); err != nil {
		return nil, err
	}
	e := &engine{cfg: cfg, failClosed: cfg.StoreFailure == FailClosed, log: log, m: m, logPC: logDecisionPC()}
	enabled := func(name string) bool {
		if !slices.Contains(cfg.Checks, name) {
			return false
		}
		switch name {
		case CheckAccess:
			return cfg.Access.Enabled
		case CheckRecipients:
			return cfg.Recipients.Enabled
		case CheckSenderLogin:
			return cfg.SenderLogin.Enabled
		case CheckDNSBL:
			return cfg.DNSBL.Enabled
		case CheckSPF:
			return cfg.SPF.Enabled
		case CheckGreylist:
			return cfg.Greylist.Enabled
		case CheckRateLimit:
			return cfg.RateLimit.Enabled
		}
		return false
	}
	res := d.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	if enabled(CheckSPF) || (enabled(CheckGreylist) && cfg.Greylist.ExemptSPFPass) {
		ex, err := newNetList(cfg.SPF.ExemptNetworks)
		if err != nil {
			return nil, err
		}
		e.spf = &spfEval{resolver: spfResolver{res}, exempt: ex, timeout: cfg.SPF.Timeout.D(), tempErrors: m.dnsFailures.WithLabelValues(CheckSPF)}
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	var checks []check
	for _, name := range cfg.Checks {
		if !enabled(name) {
			continue
		}
		var c check
		var err error
		switch name {
		case CheckAccess:
			c, err = newAccessCheck(cfg.Access)
		case CheckRecipients:
			c, err = newRecipientCheck(cfg.Recipients, d.Directory)
		case CheckSenderLogin:
			c, err = newSenderLoginCheck(cfg.SenderLogin, d.Directory)
		case CheckDNSBL:
			c, err = newDNSBLCheck(cfg.DNSBL, res, m.dnsFailures.WithLabelValues(CheckDNSBL))
		case CheckSPF:
			c = newSPFCheck(cfg.SPF, e.spf)
		case CheckGreylist:
			c, err = newGreylistCheck(cfg.Greylist, d.Store, hostname, e.spf)
		case CheckRateLimit:
			if d.Store == nil {
				err = errors.New("rate limits need a store")
			} else {
				c = newRateCheck(cfg.RateLimit, d.Store)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("policyd: %s: %w", name, err)
		}
		checks = append(checks, c)
	}
	e.setChecks(checks)
	return e, nil
}

// setChecks installs the checks to run in order, with what goes with them.
func (e *engine) setChecks(checks []check) {
	e.checks = checks
	e.next = make([]reader, len(checks))
	for i := 1; i < len(checks); i++ {
		if r, ok := checks[i].(reader); ok {
			e.next[i-1] = r
		}
	}
	e.cm = newCheckMetrics(e.m, checks)
}

func newGreylistCheck(c GreylistConfig, st store.Store, hostname string, ev *spfEval) (*greylistCheck, error) {
	if st == nil {
		return nil, errors.New("greylisting needs a store")
	}
	ex, err := newExemptions(c)
	if err != nil {
		return nil, err
	}
	g := &greylistCheck{st: st, delay: c.Delay.D(), retry: c.RetryWindow.D(), maxAge: c.MaxAge.D(),
		v4bits: c.IPv4Prefix, v6bits: c.IPv6Prefix, awlAfter: c.AutoWhitelistAfter, awlInterval: c.AutoWhitelistInterval.D(),
		exempt: ex, delim: c.RecipientDelimiter, action: mustAction(c.Action), addHeader: c.AddHeader, hostname: hostname}
	if c.ExemptSPFPass {
		g.spf = ev
	}
	return g, nil
}
