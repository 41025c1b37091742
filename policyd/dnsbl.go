package policyd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/dnsbl"
)

// dnsblCheck scores the client address against DNS lists, postscreen style: each
// list that lists the client adds its score once (the highest of its matching
// return codes), negative scores allow, and the client is blocked when the sum
// reaches the threshold. Lookup failures never block: a list that did not answer
// counts as not listing the client.
type dnsblCheck struct {
	checker   *dnsbl.Checker
	threshold float64
	action    Action
	failures  prometheus.Counter // requests with a list that did not answer
}

func newDNSBLCheck(c DNSBLConfig, r dnsbl.Resolver, failures prometheus.Counter) (*dnsblCheck, error) {
	ch, err := dnsbl.New(c.Lists, r)
	if err != nil {
		return nil, err
	}
	return &dnsblCheck{checker: ch, threshold: c.Threshold, action: mustAction(c.Action), failures: failures}, nil
}

func (d *dnsblCheck) name() string { return CheckDNSBL }

func (d *dnsblCheck) eval(ctx context.Context, tx *txn) (verdict, error) {
	r := tx.req
	if r.Authenticated() || !r.ClientAddr.IsValid() || !r.ClientAddr.IsGlobalUnicast() || r.ClientAddr.IsPrivate() {
		return pass, nil
	}
	res := d.checker.CheckIP(ctx, r.ClientAddr)
	best := map[string]float64{}
	for _, h := range res.Hits {
		if s, ok := best[h.Zone]; !ok || h.Score > s {
			best[h.Zone] = h.Score
		}
	}
	// Summed in a fixed order, and compared with a tolerance: with weights
	// like 0.1 + 0.2 + 0.7 the float sum depends on the order, and the same
	// client must get the same answer every time.
	zones := make([]string, 0, len(best))
	for z := range best {
		zones = append(zones, z)
	}
	slices.Sort(zones)
	var score float64
	for _, z := range zones {
		score += best[z]
	}
	score = math.Round(score*1e9) / 1e9
	reason := fmt.Sprintf("dnsbl score %s (threshold %s) from [%s]", fmtScore(score), fmtScore(d.threshold), strings.Join(zones, " "))
	var note string
	if len(res.Errors) > 0 {
		d.failures.Inc()
		note = fmt.Sprintf("%d lookups failed: %v", len(res.Errors), errors.Join(res.Errors...))
		reason += "; " + note
	}
	if score < d.threshold {
		return verdict{action: Dunno, reason: reason, note: note}, nil
	}
	return verdict{action: expand(d.action, "{client}", r.ClientAddress, "{lists}", strings.Join(zones, ", ")), reason: reason, note: note}, nil
}

func fmtScore(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
