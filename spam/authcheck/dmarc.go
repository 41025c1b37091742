package authcheck

import (
	"context"
	"errors"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/dovetail-mail/dovetail/spam"
)

// DMARCResult is the DMARC evaluation.
type DMARCResult struct {
	Symbol string // "" when not evaluated
	From   string // RFC5322.From domain
	Policy string // policy that applies (p= or sp=)
	SPF    bool   // aligned SPF pass
	DKIM   bool   // aligned DKIM pass
}

// orgDomain is the organizational domain (public suffix + 1 label).
func orgDomain(d string) string {
	o, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return o
}

func aligned(a, b string, mode dmarc.AlignmentMode) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if mode == dmarc.AlignmentStrict {
		return a == b
	}
	return orgDomain(a) == orgDomain(b)
}

func (c *Checker) checkDMARC(ctx context.Context, msg *spam.Message, r *Results) DMARCResult {
	from, err := fromDomain(msg)
	if errors.Is(err, errNoFrom) {
		return DMARCResult{Symbol: "DMARC_PERMERROR"}
	}
	if err != nil {
		return DMARCResult{Symbol: "DMARC_BAD_FROM"}
	}
	res := DMARCResult{From: from}
	rec, sub, err := c.lookupDMARC(ctx, from)
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		res.Symbol = "DMARC_NONE"
		return res
	case errors.Is(err, errTemp):
		res.Symbol = "DMARC_TEMPERROR"
		return res
	case err != nil:
		res.Symbol = "DMARC_PERMERROR"
		return res
	}
	res.SPF = r.SPF == spf.Pass && !r.SPFHelo && aligned(r.SPFDomain, from, rec.SPFAlignment)
	for _, d := range r.DKIM {
		if d.Err == nil && aligned(d.Domain, from, rec.DKIMAlignment) {
			res.DKIM = true
		}
	}
	policy := rec.Policy
	if sub && rec.SubdomainPolicy != "" {
		policy = rec.SubdomainPolicy
	}
	res.Policy = string(policy)
	if res.SPF || res.DKIM {
		res.Symbol = "DMARC_PASS"
		return res
	}
	// A failure caused by our own DNS trouble is not the sender's fault.
	if r.SPF == spf.TempError || hasTemp(r.DKIM) {
		res.Symbol = "DMARC_TEMPERROR"
		return res
	}
	// pct=0 asks receivers not to apply the policy (testing roll-out).
	if rec.Percent != nil && *rec.Percent == 0 {
		policy = dmarc.PolicyNone
	}
	switch policy {
	case dmarc.PolicyReject:
		res.Symbol = "DMARC_REJECT"
	case dmarc.PolicyQuarantine:
		res.Symbol = "DMARC_QUARANTINE"
	default:
		res.Symbol = "DMARC_POLICY_NONE"
	}
	return res
}

func hasTemp(ds []DKIMResult) bool {
	for _, d := range ds {
		if d.Symbol() == "DKIM_TEMPERROR" {
			return true
		}
	}
	return false
}

var errTemp = errors.New("temporary DNS failure")

// lookupDMARC finds the record for the From domain, else for its
// organizational domain (RFC 7489 §6.6.3); sub reports the latter.
func (c *Checker) lookupDMARC(ctx context.Context, from string) (rec *dmarc.Record, sub bool, err error) {
	var dnsFailed bool
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) {
		v, err := c.res.LookupTXT(ctx, name)
		if err != nil && !isNotFound(err) {
			dnsFailed = true
		}
		return v, err
	}}
	rec, err = dmarc.LookupWithOptions(from, opts)
	if errors.Is(err, dmarc.ErrNoPolicy) && !dnsFailed {
		if org := orgDomain(from); org != from {
			rec, err = dmarc.LookupWithOptions(org, opts)
			sub = true
		}
	}
	if err != nil && (dnsFailed || dmarc.IsTempFail(err)) {
		return nil, sub, errTemp
	}
	return rec, sub, err
}
