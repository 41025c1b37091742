package policyd

import (
	"context"
	"net"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/internal/dnserr"
)

// spfOutcome is one SPF evaluation.
type spfOutcome struct {
	result spf.Result
	err    error // the library's explanation; may be set even for a result
}

// spfEval runs SPF checks with an injected resolver, once per transaction: the
// SPF check and the greylist's SPF exemption share the answer through connState.
type spfEval struct {
	resolver spf.DNSResolver // an spfResolver
	exempt   netList
	timeout  time.Duration // bounds one evaluation; the result is then temperror
	// tempErrors counts evaluations ending in temperror (DNS down or slow).
	tempErrors prometheus.Counter
}

// outcome returns the SPF result for the request's client, HELO and sender,
// memoised per transaction on the connection.
func (s *spfEval) outcome(ctx context.Context, tx *txn) spfOutcome {
	r := tx.req
	key := r.Instance + "\x00" + r.ClientAddress + "\x00" + r.HeloName + "\x00" + r.Sender
	if tx.conn.spfKey == key {
		return tx.conn.spfResult
	}
	sender := r.Sender
	if sender == "" {
		// RFC 7208 §2.4: for the null sender check "postmaster@<HELO>".
		sender = "postmaster@" + r.HeloName
	}
	// Its own deadline, shorter than the request's: with DNS down, SPF answers
	// temperror in time and the later checks still run.
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := spf.CheckHostWithSender(net.IP(r.ClientAddr.AsSlice()), r.HeloName, sender,
		spf.WithContext(sctx), spf.WithResolver(s.resolver))
	o := spfOutcome{result: res, err: err}
	if res == spf.TempError {
		s.tempErrors.Inc()
	}
	if ctx.Err() == nil {
		// Remembered for the transaction's other recipients (a temperror from
		// SPF's own timeout included); a result cut short by the request's
		// deadline is not.
		tx.conn.spfKey, tx.conn.spfResult = key, o
	}
	return o
}

// applies reports whether SPF is evaluated for this request at all.
func (s *spfEval) applies(r *Request) bool {
	return r.ProtocolState == StateRcpt && !r.Authenticated() && r.ClientAddr.IsValid() && !s.exempt.contains(r.ClientAddr)
}

// spfResolver is the resolver the SPF library sees: every TXT lookup failure
// but "not found" is temporary (dnserr; RFC 7208 §4.4) — the library's own
// rule called a refused query a permerror, which permerror_action may reject —
// and every name is asked fully qualified (dnserr.FQDN: a resolv.conf search
// domain must not answer for a sender's domain).
type spfResolver struct{ spf.DNSResolver }

func (r spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := r.DNSResolver.LookupTXT(ctx, dnserr.FQDN(name))
	return txts, dnserr.Classify(name, err)
}

func (r spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.DNSResolver.LookupMX(ctx, dnserr.FQDN(name))
}

func (r spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return r.DNSResolver.LookupIPAddr(ctx, dnserr.FQDN(host))
}

// spfCheck answers the configured action for each SPF result.
type spfCheck struct {
	ev                             *spfEval
	fail, softfail, temperr, perma Action
}

func newSPFCheck(c SPFConfig, ev *spfEval) *spfCheck {
	return &spfCheck{ev: ev, fail: mustAction(c.FailAction), softfail: mustAction(c.SoftFailAction),
		temperr: mustAction(c.TempErrorAction), perma: mustAction(c.PermErrorAction)}
}

func (s *spfCheck) name() string { return CheckSPF }

func (s *spfCheck) eval(ctx context.Context, tx *txn) (verdict, error) {
	r := tx.req
	if !s.ev.applies(r) {
		return pass, nil
	}
	o := s.ev.outcome(ctx, tx)
	var a Action
	switch o.result {
	case spf.Fail:
		a = s.fail
	case spf.SoftFail:
		a = s.softfail
	case spf.TempError:
		a = s.temperr
	case spf.PermError:
		a = s.perma
	default:
		return verdict{action: Dunno, reason: "spf " + string(o.result)}, nil
	}
	reason := "spf " + string(o.result)
	if o.err != nil {
		reason += ": " + o.err.Error()
	}
	a = expand(a, "{sender}", r.Sender, "{client}", r.ClientAddress, "{result}", string(o.result))
	return verdict{action: a, reason: reason}, nil
}
