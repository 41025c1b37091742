// Package authcheck turns SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489)
// results, and DNS block list hits, into spam symbols, and renders them as an
// Authentication-Results header (RFC 8601).
//
// Results are symbols only: a DNS timeout or a broken record is a *_TEMPERROR
// or *_PERMERROR symbol scored 0 (or near), never an error that would fail
// the scan. All DNS goes through one Resolver with a per-query timeout; the
// engine's scan budget (the context) bounds the whole check.
package authcheck

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"

	"blitiri.com.ar/go/spf"
	"golang.org/x/net/idna"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// Checker is the SPF/DKIM/DMARC spam.Check.
type Checker struct {
	cfg    Config
	res    timeoutResolver
	scores map[string]float64
	// sample draws the pct= sample of a failing DMARC message: an integer
	// in [0, 100). Tests replace it to be deterministic.
	sample func() int
}

var _ spam.Check = (*Checker)(nil)

// New builds a checker; r nil means net.DefaultResolver.
func New(cfg Config, r Resolver) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authcheck: %w", err)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	return &Checker{
		cfg: cfg, res: timeoutResolver{r: r, d: cfg.Timeout.D()}, scores: mergeScores(cfg.Scores),
		sample: func() int { return rand.IntN(100) },
	}, nil
}

func mergeScores(over map[string]float64) map[string]float64 {
	m := make(map[string]float64, len(DefaultScores))
	for k, v := range DefaultScores {
		m[k] = v
	}
	for k, v := range over {
		m[k] = v
	}
	return m
}

// Name implements spam.Check.
func (c *Checker) Name() string { return "AUTH" }

// Results are the raw outcomes, for callers that want more than symbols.
type Results struct {
	SPF       spf.Result // "" when not checked
	SPFDomain string     // MAIL FROM domain, or HELO for the null sender
	SPFHelo   bool       // checked the HELO identity (null sender)
	SPFSender string
	DKIM      []DKIMResult
	DMARC     DMARCResult
}

// Check implements spam.Check. Mail from authenticated clients is not checked:
// SPF and DMARC describe the path from the sending domain to us, which
// submission does not take.
func (c *Checker) Check(ctx context.Context, in *spam.Input, msg *spam.Message) ([]spam.Symbol, error) {
	if in.AuthUser != "" {
		return nil, nil
	}
	r := c.Run(ctx, in, msg)
	return c.symbols(r), nil
}

// Run performs the checks: SPF and DKIM concurrently, then DMARC on both.
func (c *Checker) Run(ctx context.Context, in *spam.Input, msg *spam.Message) Results {
	var r Results
	var wg sync.WaitGroup
	if c.cfg.SPF && in.ClientIP != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.checkSPF(ctx, in, &r)
		}()
	}
	if c.cfg.DKIM && msg != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.DKIM = c.checkDKIM(ctx, msg)
		}()
	}
	wg.Wait()
	if c.cfg.DMARC && c.cfg.SPF && c.cfg.DKIM && msg != nil {
		r.DMARC = c.checkDMARC(ctx, msg, &r)
	}
	return r
}

func (c *Checker) checkSPF(ctx context.Context, in *spam.Input, r *Results) {
	sender := in.MailFrom
	_, domain, _ := strings.Cut(sender, "@")
	r.SPFSender = sender
	if domain == "" {
		// RFC 7208 §2.4: the null sender is checked as postmaster@HELO.
		// That is also the <sender> the macros expand (%{s}, %{l}, %{o}):
		// left empty, a record such as "exists:%{l}.%{o}._spf.example"
		// failed the domain's own bounces.
		domain, r.SPFHelo = strings.TrimSuffix(in.Helo, "."), true
		sender, r.SPFSender = "postmaster@"+domain, ""
	}
	r.SPFDomain = strings.ToLower(domain)
	if domain == "" {
		r.SPF = spf.None
		return
	}
	res, err := spf.CheckHostWithSender(in.ClientIP, in.Helo, sender, spf.WithResolver(c.res), spf.WithContext(ctx))
	if err != nil && ctx.Err() != nil {
		res = spf.TempError
	}
	r.SPF = res
}

func (c *Checker) sym(name string, opts ...string) spam.Symbol {
	return spam.Symbol{Name: name, Score: c.scores[name], Description: descriptions[name], Options: opts}
}

var descriptions = map[string]string{
	"SPF_PASS":          "SPF: sender authorised by its domain",
	"SPF_FAIL":          "SPF: sender not authorised (-all)",
	"SPF_SOFTFAIL":      "SPF: sender probably not authorised (~all)",
	"SPF_NEUTRAL":       "SPF: domain makes no assertion (?all)",
	"SPF_NONE":          "SPF: no record",
	"SPF_TEMPERROR":     "SPF: temporary DNS error",
	"SPF_PERMERROR":     "SPF: broken record",
	"DKIM_VALID":        "DKIM: valid signature",
	"DKIM_INVALID":      "DKIM: signature does not verify",
	"DKIM_NONE":         "DKIM: message not signed",
	"DKIM_TEMPERROR":    "DKIM: key lookup failed temporarily",
	"DKIM_PERMERROR":    "DKIM: malformed signature or key",
	"DKIM_BODY_LENGTH":  "DKIM: signature covers only part of the body (l=), not verified",
	"DKIM_TESTING":      "DKIM: signature does not verify, but the key is in testing mode (t=y)",
	"DMARC_PASS":        "DMARC: aligned SPF or DKIM pass",
	"DMARC_REJECT":      "DMARC: fails, domain policy reject",
	"DMARC_QUARANTINE":  "DMARC: fails, domain policy quarantine",
	"DMARC_POLICY_NONE": "DMARC: fails, domain policy none",
	"DMARC_NONE":        "DMARC: no policy",
	"DMARC_TEMPERROR":   "DMARC: temporary DNS error",
	"DMARC_PERMERROR":   "DMARC: broken record, or no From",
	"DMARC_BAD_FROM":    "DMARC: From has no single parsable address, alignment impossible",
}

func (c *Checker) symbols(r Results) []spam.Symbol {
	var out []spam.Symbol
	if r.SPF != "" {
		name := "SPF_" + strings.ToUpper(string(r.SPF))
		key := "smtp.mailfrom=" + r.SPFSender
		if r.SPFHelo {
			key = "smtp.helo=" + r.SPFDomain
		}
		out = append(out, c.sym(name, key))
	}
	if c.cfg.DKIM {
		byName := map[string][]string{}
		for _, d := range r.DKIM {
			byName[d.Symbol()] = append(byName[d.Symbol()], "header.d="+d.Domain)
		}
		if len(r.DKIM) == 0 {
			byName["DKIM_NONE"] = nil
		}
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, c.sym(n, byName[n]...))
		}
	}
	if r.DMARC.Symbol != "" {
		opts := []string{"header.from=" + r.DMARC.From}
		if r.DMARC.Policy != "" {
			opts = append(opts, "p="+r.DMARC.Policy)
		}
		if r.DMARC.Disposition != "" {
			opts = append(opts, "dis="+r.DMARC.Disposition)
		}
		out = append(out, c.sym(r.DMARC.Symbol, opts...))
	}
	return out
}

// errNoFrom: the message has no From field. RFC 5322 requires one and a
// structure rule scores its absence; DMARC has nothing to align with.
var errNoFrom = errors.New("no From field")

// fromDomain returns the single RFC5322.From domain, lower-cased. Anything
// else (several fields or mailboxes, an unparsable value, no usable domain)
// is an error and never a guess (RFC 7489 §6.6.1): the domain checked must be
// the one the reader is shown.
func fromDomain(msg *spam.Message) (string, error) {
	froms := msg.Header.RawValues("From")
	switch len(froms) {
	case 0:
		return "", errNoFrom
	case 1:
	default:
		return "", fmt.Errorf("%d From fields", len(froms))
	}
	addr, err := message.ParseMailbox(froms[0])
	if err != nil {
		return "", fmt.Errorf("from: %w", err)
	}
	d := addr[strings.LastIndexByte(addr, '@')+1:]
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if a, err := idna.Lookup.ToASCII(d); err == nil {
		d = a
	}
	if !hostLike(d) {
		return "", errors.New("from: no usable domain")
	}
	return d, nil
}

// hostLike accepts what can be looked up as a DMARC domain: LDH labels
// (and '_'), at least one dot, no empty label.
func hostLike(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for i := 0; i < len(d); i++ {
		b := d[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '.' || b == '_') {
			return false
		}
	}
	return true
}
