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
	// For the null sender SPFDomain is the HELO name: RFC 7489 §4.1 takes
	// SPF's MAIL FROM result, which RFC 7208 §2.4 defines as postmaster@HELO
	// for the null path, so a bounce from the domain's own MX aligns.
	res.SPF = r.SPF == spf.Pass && aligned(r.SPFDomain, from, rec.SPFAlignment)
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
	rec, err = c.lookupRecord(ctx, from)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := orgDomain(from); org != from {
			rec, err = c.lookupRecord(ctx, org)
			sub = true
		}
	}
	if errors.Is(err, errMultipleRecords) {
		// §6.6.3 step 5: discovery ends, DMARC is not applied.
		err = dmarc.ErrNoPolicy
	}
	return rec, sub, err
}

// errMultipleRecords: a domain publishes several DMARC records.
var errMultipleRecords = errors.New("several DMARC records")

// lookupRecord fetches the DMARC record of one domain (RFC 7489 §6.6.3 steps
// 1-5): TXT records that are not DMARC are discarded, and several DMARC
// records mean none (go-msgauth's lookup takes the first DNS returns).
func (c *Checker) lookupRecord(ctx context.Context, domain string) (*dmarc.Record, error) {
	txts, err := c.res.LookupTXT(ctx, "_dmarc."+domain)
	switch {
	case isNotFound(err):
		return nil, dmarc.ErrNoPolicy
	case err != nil:
		return nil, errTemp
	}
	var recs []string
	for _, txt := range txts {
		if isDMARCRecord(txt) {
			recs = append(recs, txt)
		}
	}
	switch len(recs) {
	case 0:
		return nil, dmarc.ErrNoPolicy
	case 1:
		return parseRecord(recs[0])
	}
	return nil, errMultipleRecords
}

// isDMARCRecord reports a record whose first tag is v=DMARC1 (the tag name
// is case-insensitive, the value is not; WSP may surround '=').
func isDMARCRecord(txt string) bool {
	first, _, _ := strings.Cut(txt, ";")
	k, v, ok := strings.Cut(first, "=")
	return ok && strings.EqualFold(strings.TrimSpace(k), "v") && strings.TrimSpace(v) == "DMARC1"
}

// parseRecord reads a record as RFC 7489 §6.3 asks, where go-msgauth's Parse
// is strict: tag names and literal values are case-insensitive (RFC 5234
// §2.3: "p=Reject" is valid), and a tag other than p and sp with a bad value
// is ignored, keeping its default, instead of voiding the domain's policy
// (a typo in rf= or pct= must not let its From be spoofed unscored). A bad p
// or sp still fails the record.
func parseRecord(txt string) (*dmarc.Record, error) {
	tags := []string{"v=DMARC1"}
	for _, part := range strings.Split(txt, ";")[1:] {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "p", "sp", "adkim", "aspf", "fo", "rf":
			v = strings.ToLower(v)
		}
		tag := k + "=" + v
		if k != "p" && k != "sp" {
			if _, err := dmarc.Parse("v=DMARC1; p=none; " + tag); err != nil {
				continue
			}
		}
		tags = append(tags, tag)
	}
	return dmarc.Parse(strings.Join(tags, "; "))
}
