package policyd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// TestDecisionLogLine pins the decision line: its fields, their order and the
// text handler's quoting, as admins' log parsers read them.
func TestDecisionLogLine(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				if got := a.Value.Time(); !got.Equal(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)) {
					t.Errorf("log time %v, want the reply time", got)
				}
				return slog.Attr{}
			}
			return a
		},
	})).With("daemon", "policyd")
	s := newDirect(t, testConfig(), Deps{Store: mem.New(), Log: log})
	e := s.eng.Load()
	req := &Request{QueueID: "4XyZ1", ProtocolState: StateRcpt, ClientName: "", ClientAddress: "192.0.2.10",
		HeloName: "helo with space", Sender: "a@example.org", Recipient: "b=c@example.com", SASLUsername: "alice"}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    decision
		want string
	}{
		{decision{action: Action{Verb: VerbDeferIfPermit, Text: "4.7.1 Greylisted"}, check: CheckGreylist, reason: "greylist: new triplet"},
			`level=INFO msg="policy decision" daemon=policyd queue_id=4XyZ1 state=RCPT client=unknown[192.0.2.10] helo="helo with space" ` +
				`sender=a@example.org recipient="b=c@example.com" sasl_username=alice action="DEFER_IF_PERMIT 4.7.1 Greylisted" ` +
				`check=greylist reason="greylist: new triplet" took=1.5ms`},
		{decision{action: tempFail, check: CheckRateLimit, reason: "internal error", notes: []string{"greylist: store down", "x: y"}, err: errors.New("rate limit: boom")},
			`level=WARN msg="policy decision" daemon=policyd queue_id=4XyZ1 state=RCPT client=unknown[192.0.2.10] helo="helo with space" ` +
				`sender=a@example.org recipient="b=c@example.com" sasl_username=alice action="DEFER_IF_PERMIT 4.3.0 Temporary policy service failure, try again later" ` +
				`check=ratelimit reason="internal error" took=1.5ms fail_open="greylist: store down; x: y" err="rate limit: boom"`},
	} {
		buf.Reset()
		e.logDecision(&txn{req: req}, tc.d, tc.d.action.String(), at, 1500*time.Microsecond)
		if got := strings.TrimSuffix(buf.String(), "\n"); got != tc.want {
			t.Errorf("log line\n got %s\nwant %s", got, tc.want)
		}
	}
	// Without a SASL user the field is left out; below the level nothing is written.
	req.SASLUsername = ""
	buf.Reset()
	e.logDecision(&txn{req: req}, decision{action: Dunno, idx: -1}, "DUNNO", at, time.Millisecond)
	if got := buf.String(); strings.Contains(got, "sasl_username") || !strings.Contains(got, `recipient="b=c@example.com" action=DUNNO check="" reason="" took=1ms`) {
		t.Errorf("no SASL user: %s", got)
	}
	quiet := newDirect(t, testConfig(), Deps{Store: mem.New(), Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))})
	buf.Reset()
	quiet.eng.Load().logDecision(&txn{req: req}, decision{action: Dunno, idx: -1}, "DUNNO", at, time.Millisecond)
	if buf.Len() != 0 {
		t.Errorf("logged below the handler's level: %s", buf.String())
	}
}

// TestMetricsSeries checks the request and check counters through the cached
// children: the same series and counts as label lookups per request give.
func TestMetricsSeries(t *testing.T) {
	cfg := testConfig()
	cfg.Checks = []string{CheckRateLimit, CheckGreylist}
	cfg.Greylist.Enabled = true
	cfg.Greylist.ExemptNetworks = []string{"127.0.0.0/8"}
	cfg.RateLimit.Enabled = true
	cfg.RateLimit.Limits = []RateLimit{{Name: "ip", Key: KeyClientAddress, Recipients: 1000, Window: config.Duration(time.Hour), Action: "DEFER"}}
	cfg.StoreFailure = FailOpen
	st := &failingStore{Store: mem.New()}
	ts := startServer(t, cfg, Deps{Store: st})
	c := ts.dial(t)
	for i := range 3 { // greylisted
		if got := c.ask("recipient", "u"+string(rune('a'+i))+"@example.com"); !strings.HasPrefix(got, "DEFER_IF_PERMIT") {
			t.Fatalf("greylist: %q", got)
		}
	}
	if got := c.ask("client_address", "127.0.0.1"); got != "DUNNO" { // exempt: no check decides
		t.Fatalf("exempt: %q", got)
	}
	st.fail.Store(true) // fail open: both checks note the failure, none decides
	if got := c.ask("recipient", "z@example.com"); got != "DUNNO" {
		t.Fatalf("store down: %q", got)
	}
	c.send("request=smtpd_access_policy\nno equals sign\n\n")
	if got := c.reply(); !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.5.2") {
		t.Fatalf("malformed: %q", got)
	}
	want := map[string]float64{
		`dovetail_policyd_requests_total{action="DEFER_IF_PERMIT",check="greylist"}`:      3,
		`dovetail_policyd_requests_total{action="DEFER_IF_PERMIT",check="protocol"}`:      1,
		`dovetail_policyd_requests_total{action="DUNNO",check="none"}`:                    2,
		`dovetail_policyd_check_results_total{check="greylist",result="DEFER_IF_PERMIT"}`: 3,
		`dovetail_policyd_check_results_total{check="greylist",result="DUNNO"}`:           1,
		`dovetail_policyd_check_results_total{check="greylist",result="fail_open"}`:       1,
		`dovetail_policyd_check_results_total{check="ratelimit",result="DUNNO"}`:          4,
		`dovetail_policyd_check_results_total{check="ratelimit",result="fail_open"}`:      1,
		`dovetail_policyd_check_duration_seconds_count{check="greylist"}`:                 5,
		`dovetail_policyd_check_duration_seconds_count{check="ratelimit"}`:                5,
	}
	// The server counts a request just after its reply: poll briefly.
	var got map[string]float64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if got = gatherSeries(t, ts.reg, "dovetail_policyd_requests_total", "dovetail_policyd_check_results_total",
			"dovetail_policyd_check_duration_seconds"); maps.Equal(got, want) {
			return
		}
	}
	t.Errorf("series\n got %v\nwant %v", got, want)
}

// gatherSeries returns every series of the named families as
// name{label="value",...} (labels sorted), histograms as their _count.
func gatherSeries(t *testing.T, g prometheus.Gatherer, names ...string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.GetHistogram() != nil:
				out[strings.Replace(key, "{", "_count{", 1)] = float64(m.GetHistogram().GetSampleCount())
			default:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// failingStore fails reads, writes and windows with store.ErrUnavailable once
// fail is set.
type failingStore struct {
	store.Store
	fail atomic.Bool
}

func (f *failingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if f.fail.Load() {
		return nil, store.ErrUnavailable
	}
	return f.Store.Get(ctx, key)
}

func (f *failingStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if f.fail.Load() {
		return store.ErrUnavailable
	}
	return f.Store.Set(ctx, key, value, ttl)
}

func (f *failingStore) WindowAdd(ctx context.Context, key string, now time.Time, window time.Duration, n int64) (int64, error) {
	if f.fail.Load() {
		return 0, store.ErrUnavailable
	}
	return f.Store.WindowAdd(ctx, key, now, window, n)
}

func TestResultIndex(t *testing.T) {
	for i, l := range resultLabels {
		if got := resultIndex(l); got != i {
			t.Errorf("resultIndex(%q) = %d, want %d", l, got, i)
		}
	}
	if resultIndex("BOGUS") != -1 {
		t.Error("unknown label indexed")
	}
}
