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
	Policy string // policy that applies: p=, sp=, or np= (RFC 9091)
	// Disposition is the policy applied to a failing message: Policy, or
	// for the messages pct= leaves out the next less strict one (RFC 7489
	// §6.6.4). OpenDMARC and Google report it as "dis=".
	Disposition string
	// NonExistent: the From domain does not exist (RFC 9091 §2.1), so np=
	// applied. Looked up only when np= could change the verdict.
	NonExistent bool
	SPF         bool // aligned SPF pass
	DKIM        bool // aligned DKIM pass
}

// policyRecord is a DMARC record with the tags go-msgauth does not read.
type policyRecord struct {
	*dmarc.Record
	// NonexistentPolicy is np= (RFC 9091 §4.1), "" when absent.
	NonexistentPolicy dmarc.Policy
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
	// RFC 9091 §4.1: for a From domain that does not exist, under the
	// organizational domain's record, np= applies instead of sp= or p=.
	// The lookups are made only when np= would change the outcome.
	if sub && rec.NonexistentPolicy != "" && rec.NonexistentPolicy != policy {
		exists, err := c.domainExists(ctx, from)
		if err != nil {
			// Not knowing which policy applies must not pick the stricter.
			res.Symbol = "DMARC_TEMPERROR"
			return res
		}
		if !exists {
			policy, res.NonExistent = rec.NonexistentPolicy, true
			res.Policy = string(policy)
		}
	}
	dis := c.disposition(policy, rec.Percent)
	res.Disposition = string(dis)
	switch dis {
	case dmarc.PolicyReject:
		res.Symbol = "DMARC_REJECT"
	case dmarc.PolicyQuarantine:
		res.Symbol = "DMARC_QUARANTINE"
	default:
		res.Symbol = "DMARC_POLICY_NONE"
	}
	return res
}

// disposition samples pct= (RFC 7489 §6.6.4): the policy applies to pct
// percent of failing messages, the rest get the next less strict policy
// (reject → quarantine, quarantine → none). No pct= (or one ignored as
// invalid) is 100; pct=0 applies the less strict policy to all, which is
// also what DMARCbis's t=y asks.
func (c *Checker) disposition(p dmarc.Policy, pct *int) dmarc.Policy {
	if pct == nil || *pct >= 100 || c.sample() < *pct {
		return p
	}
	switch p {
	case dmarc.PolicyReject:
		return dmarc.PolicyQuarantine
	case dmarc.PolicyQuarantine:
		return dmarc.PolicyNone
	}
	return p
}

// domainExists reports whether domain exists for DMARC (RFC 9091 §2.1): a
// non-existent domain has NXDOMAIN or NODATA for A, AAAA and MX alike. Any
// answer settles that it exists; otherwise a lookup that failed for another
// reason than "no such name/record" is errTemp. A and AAAA are asked
// separately: Go's LookupIPAddr reports only one of the two errors (the
// answer that came last), so a SERVFAIL for A followed by NODATA for AAAA
// read as "does not exist" and picked the stricter np=. The three lookups
// run at once, so they cost one timeout, not three.
func (c *Checker) domainExists(ctx context.Context, domain string) (bool, error) {
	lookups := []func() (int, error){
		func() (int, error) { ips, err := c.res.LookupNetIP(ctx, "ip4", domain); return len(ips), err },
		func() (int, error) { ips, err := c.res.LookupNetIP(ctx, "ip6", domain); return len(ips), err },
		// A null MX (RFC 7505) is an answer: the domain exists.
		func() (int, error) { mxs, err := c.res.LookupMX(ctx, domain); return len(mxs), err },
	}
	type answer struct {
		n   int
		err error
	}
	answers := make(chan answer, len(lookups))
	for _, lookup := range lookups {
		go func() {
			n, err := lookup()
			answers <- answer{n, err}
		}()
	}
	var temp bool
	for range lookups {
		a := <-answers
		switch {
		case a.n > 0: // Go returns the valid MX records beside an error about the others
			return true, nil // the other lookups finish on their own, bounded by the timeout
		case a.err != nil && !isNotFound(a.err):
			temp = true
		}
	}
	if temp {
		return false, errTemp
	}
	return false, nil
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
func (c *Checker) lookupDMARC(ctx context.Context, from string) (rec *policyRecord, sub bool, err error) {
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
func (c *Checker) lookupRecord(ctx context.Context, domain string) (*policyRecord, error) {
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
// or sp still fails the record. np= (RFC 9091), which go-msgauth does not
// know, is read here; a bad one is ignored like the other optional tags, so
// sp= or p= applies.
func parseRecord(txt string) (*policyRecord, error) {
	tags := []string{"v=DMARC1"}
	var np dmarc.Policy
	for _, part := range strings.Split(txt, ";")[1:] {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "p", "sp", "np", "adkim", "aspf", "fo", "rf":
			v = strings.ToLower(v)
		}
		if k == "np" {
			if dmarcPolicyWord(v) {
				np = dmarc.Policy(v)
			}
			continue
		}
		tag := k + "=" + v
		if k != "p" && k != "sp" {
			if _, err := dmarc.Parse("v=DMARC1; p=none; " + tag); err != nil {
				continue
			}
		}
		tags = append(tags, tag)
	}
	rec, err := dmarc.Parse(strings.Join(tags, "; "))
	if err != nil {
		return nil, err
	}
	return &policyRecord{Record: rec, NonexistentPolicy: np}, nil
}
