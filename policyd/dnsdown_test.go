package policyd

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/dnsbl"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// blackholeResolver is a real Go resolver whose DNS server swallows every
// query: lookups end only at their context's deadline, like a resolver that is
// down or unreachable.
func blackholeResolver(t *testing.T) *net.Resolver {
	t.Helper()
	return fakeDNSResolver(t, func([]byte) []byte { return nil })
}

// fakeDNSResolver is a real Go resolver whose DNS server sends answer(query)
// for each query, or nothing when that is nil.
func fakeDNSResolver(t *testing.T, answer func(query []byte) []byte) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := answer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// TestDNSDown: with DNS unreachable, SPF answers its temperror action and the
// SPF-pass greylist exemption does not apply (greylisted); the DNSBL counts an
// unanswered list as not listing (postscreen's behaviour) but says so in the
// decision. Nothing waits longer than the configured timeouts.
func TestDNSDown(t *testing.T) {
	res := blackholeResolver(t)
	base := testConfig()
	base.RequestTimeout = config.Duration(3 * time.Second)
	base.SPF.Timeout = config.Duration(300 * time.Millisecond)
	base.DNSBL.Enabled = true
	base.DNSBL.Lists.Timeout = config.Duration(100 * time.Millisecond)
	base.DNSBL.Lists.Budget = config.Duration(200 * time.Millisecond)
	base.DNSBL.Lists.Zones = []dnsbl.Zone{{Zone: "zen.example", Kind: dnsbl.KindIP, Symbol: "ZEN", Score: 1}}

	spfCfg := base
	spfCfg.SPF.Enabled = true
	greyCfg := base
	greyCfg.Greylist.Enabled = true
	greyCfg.Greylist.ExemptSPFPass = true
	tests := []struct {
		name string
		cfg  Config
		want string
		log  string
	}{
		// SPF's own timeout (300ms), not the request's (3s), ends the evaluation.
		{"spf temperror", spfCfg, "DEFER_IF_PERMIT 4.7.24 SPF temporary error", "reason=\"spf temperror"},
		// Greylisting still runs after SPF timed out, and does not exempt the sender.
		{"greylist spf exemption not granted", greyCfg, "DEFER_IF_PERMIT 4.7.1 Greylisted", "reason=\"greylist: new triplet\""},
		{"dnsbl alone", base, "DUNNO", "lookups failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.cfg, Deps{Resolver: res})
			c := ts.dial(t)
			for i, rcpt := range []string{"a@example.com", "b@example.com"} {
				start := time.Now()
				if got := c.ask("sender", "a@spf.example", "recipient", rcpt); !strings.HasPrefix(got, tc.want) {
					t.Fatalf("rcpt %d: got %q, want %q", i, got, tc.want)
				}
				// The second RCPT of the transaction reuses the SPF temperror (and
				// the DNSBL its budget): no second wait for a dead DNS beyond that.
				if d := time.Since(start); d > 1500*time.Millisecond {
					t.Errorf("rcpt %d: answer took %s", i, d)
				}
			}
			if !strings.Contains(ts.logs.String(), tc.log) {
				t.Errorf("decision log lacks %q:\n%s", tc.log, ts.logs.String())
			}
			// Counted, so a DNS outage is visible even where it lets mail through.
			if n := counterValue(ts.m.dnsFailures.WithLabelValues(CheckDNSBL)); n != 2 {
				t.Errorf("dnsbl DNS failures = %v, want 2", n)
			}
			wantSPF := 0.0
			if tc.cfg.SPF.Enabled || tc.cfg.Greylist.ExemptSPFPass {
				wantSPF = 1 // once per transaction: the second RCPT reuses the result
			}
			if n := counterValue(ts.m.dnsFailures.WithLabelValues(CheckSPF)); n != wantSPF {
				t.Errorf("spf temperrors = %v, want %v", n, wantSPF)
			}
		})
	}
}

// rcodeResolver is a real Go resolver whose DNS server answers every query
// with rcode (no records), as a resolver that refuses the query (REFUSED:
// an ACL, a misconfigured forwarder) or cannot handle it does.
func rcodeResolver(t *testing.T, rcode byte) *net.Resolver {
	t.Helper()
	return fakeDNSResolver(t, func(q []byte) []byte {
		if len(q) < 12 {
			return nil
		}
		// The query echoed back as the answer: QR and RA set, the opcode
		// and RD kept, the rcode set; no answer records.
		resp := append([]byte(nil), q...)
		resp[2] = 0x80 | resp[2]&0x79
		resp[3] = 0x80 | rcode
		return resp
	})
}

// TestSPFDNSErrorIsTempError: a DNS answer other than success or NXDOMAIN
// (REFUSED, NOTIMP, FORMERR, SERVFAIL) ends SPF in temperror (RFC 7208
// section 4.4), whatever Go's resolver calls temporary: with permerror
// configured to reject, a resolver refusing queries must defer mail, not
// bounce it.
func TestSPFDNSErrorIsTempError(t *testing.T) {
	for _, rc := range []struct {
		name  string
		rcode byte
	}{{"SERVFAIL", 2}, {"NOTIMP", 4}, {"REFUSED", 5}} {
		t.Run(rc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.SPF.Enabled = true
			cfg.SPF.PermErrorAction = "550 5.7.24 SPF permanent error"
			s := newDirect(t, cfg, Deps{Store: mem.New(), Resolver: rcodeResolver(t, rc.rcode)})
			d := evalDirect(t, s, nil, "sender", "a@spf.example", "client_address", "198.51.100.9")
			if d.action.Permanent() || !strings.HasPrefix(d.action.String(), "DEFER_IF_PERMIT 4.7.24") {
				t.Fatalf("got %+v, want the temperror action", d)
			}
		})
	}
}

// namesResolver records the names the SPF library asks for.
type namesResolver struct{ names []string }

func (r *namesResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	r.names = append(r.names, name)
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *namesResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	r.names = append(r.names, name)
	return nil, nil
}

func (r *namesResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.names = append(r.names, host)
	return nil, nil
}

func (r *namesResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	r.names = append(r.names, addr)
	return nil, nil
}

// TestSPFNamesFullyQualified: every name SPF looks up is asked with its
// trailing dot, so a resolv.conf search domain cannot answer for a sender's
// domain (its SPF wildcard would fail every sender without a record).
func TestSPFNamesFullyQualified(t *testing.T) {
	rec := &namesResolver{}
	r := spfResolver{rec}
	r.LookupTXT(t.Context(), "spf.example")
	r.LookupMX(t.Context(), "mx.spf.example")
	r.LookupIPAddr(t.Context(), "a.spf.example")
	r.LookupIPAddr(t.Context(), "192.0.2.1")
	want := []string{"spf.example.", "mx.spf.example.", "a.spf.example.", "192.0.2.1"}
	if strings.Join(rec.names, " ") != strings.Join(want, " ") {
		t.Fatalf("asked %q, want %q", rec.names, want)
	}
}
