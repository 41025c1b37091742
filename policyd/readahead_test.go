package policyd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// aheadStore offers store.ReadAheader (and so store.MultiGetter) over a local
// store, as Redis does, and counts the calls it gets. addErr fails the window
// adds that carry reads; readsFail makes their reads fail (nil values).
type aheadStore struct {
	*mem.Store
	mu        sync.Mutex
	calls     map[string]int
	addErr    error
	readsFail bool
}

func newAheadStore(m *mem.Store) *aheadStore { return &aheadStore{Store: m, calls: map[string]int{}} }

func (a *aheadStore) count(op string) {
	a.mu.Lock()
	a.calls[op]++
	a.mu.Unlock()
}

func (a *aheadStore) ops() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.calls))
	for k, v := range a.calls {
		out[k] = v
	}
	clear(a.calls)
	return out
}

func (a *aheadStore) Get(ctx context.Context, key string) ([]byte, error) {
	a.count("get")
	return a.Store.Get(ctx, key)
}

func (a *aheadStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	a.count("set")
	return a.Store.Set(ctx, key, value, ttl)
}

func (a *aheadStore) WindowAdd(ctx context.Context, key string, now time.Time, window time.Duration, n int64) (int64, error) {
	a.count("windowadd")
	return a.Store.WindowAdd(ctx, key, now, window, n)
}

func (a *aheadStore) GetMulti(ctx context.Context, keys ...string) ([][]byte, error) {
	a.count("getmulti")
	return store.GetMulti(ctx, a.Store, keys...)
}

func (a *aheadStore) WindowAddGetMulti(ctx context.Context, key string, now time.Time, window time.Duration, n int64, keys ...string) (int64, [][]byte, error) {
	a.count("windowadd_getmulti")
	if a.addErr != nil {
		return 0, nil, a.addErr
	}
	total, vals, err := store.WindowAddGetMulti(ctx, a.Store, key, now, window, n, keys...)
	if a.readsFail {
		vals = nil
	}
	return total, vals, err
}

// aheadConfig is the benchmark's order: a per-client rate limit counted on
// every request, then greylisting.
func aheadConfig() Config {
	cfg := greyConfig()
	cfg.Greylist.ExemptNetworks = []string{"198.51.100.0/24"}
	cfg.RateLimit.Enabled = true
	cfg.RateLimit.Limits = []RateLimit{{Name: "ip-hour", Key: KeyClientAddress, Messages: 4, Recipients: 8,
		Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 Rate limit exceeded"}}
	cfg.Checks = []string{CheckRateLimit, CheckGreylist}
	return cfg
}

type aheadStep struct {
	wait  time.Duration
	attrs []string
}

// aheadScript walks greylisting through every state (new, early retry, pass,
// known, auto-whitelisted, exempt, authenticated) with the rate limit in front,
// up to where the rate limit refuses.
var aheadScript = []aheadStep{
	{0, []string{"instance", "m1"}},                                   // new triplet
	{100 * time.Second, []string{"instance", "m2"}},                   // retried too early
	{201 * time.Second, []string{"instance", "m3"}},                   // passed after 301 s
	{0, []string{"instance", "m3", "recipient", "b@example.com"}},     // same message: counted once, new triplet
	{time.Second, []string{"instance", "m4"}},                         // known triplet
	{0, []string{"instance", "m5", "client_address", "198.51.100.9"}}, // exempt network
	{0, []string{"instance", "m6", "sasl_username", "alice"}},         // authenticated
	{2 * time.Hour, []string{"instance", "m7", "recipient", "b@example.com"}},
	{2 * time.Hour, []string{"instance", "m8", "recipient", "c@example.com"}},
	{301 * time.Second, []string{"instance", "m9", "recipient", "c@example.com"}}, // second credit: auto-whitelisted from now
	{time.Second, []string{"instance", "m10", "recipient", "d@example.com"}},      // whitelisted client
	{0, []string{"instance", "m11", "recipient", "e@example.com"}},                // whitelisted client
	{0, []string{"instance", "m12", "recipient", "f@example.com"}},                // rate limit: 7th message in the hour
	{0, []string{"instance", "m12", "recipient", "g@example.com"}},                // same message: same refusal, no count
	{0, []string{"instance", "m13", "recipient", "h@example.com"}},
}

func runAheadScript(t *testing.T, cfg Config, st store.Store, m *mem.Store, clk *clock) []string {
	t.Helper()
	s := newDirect(t, cfg, Deps{Store: st, Now: clk.Now})
	cs := &connState{}
	var out []string
	for i, step := range aheadScript {
		clk.Add(step.wait)
		d := evalDirect(t, s, cs, step.attrs...)
		out = append(out, fmt.Sprintf("%d: %s %s %q %q", i, d.action, d.check, d.reason, d.notes))
	}
	// What the requests left behind, read directly.
	for _, k := range []string{"grey:awl:192.0.2.10", "grey:t:192.0.2.0/24/news@sender.example/user@example.com",
		"grey:t:192.0.2.0/24/news@sender.example/f@example.com", "grey:t:192.0.2.0/24/news@sender.example/h@example.com"} {
		v, err := m.Get(t.Context(), k)
		out = append(out, fmt.Sprintf("%s = %q %v", k, v, err))
	}
	n, err := m.WindowAdd(t.Context(), "rate:ip-hour:192.0.2.10:r", clk.Now(), time.Hour, 0)
	return append(out, fmt.Sprintf("recipients counted: %d %v", n, err))
}

// TestReadAheadSameDecisions: reading greylisting's keys with the rate limit's
// last window add changes nothing: the same decisions and the same stored
// state as a store that reads them on their own (local, or MultiGetter), in
// both check orders.
func TestReadAheadSameDecisions(t *testing.T) {
	for _, order := range [][]string{{CheckRateLimit, CheckGreylist}, {CheckGreylist, CheckRateLimit}} {
		t.Run(strings.Join(order, ","), func(t *testing.T) {
			cfg := aheadConfig()
			cfg.Checks = order
			var want []string
			for _, kind := range []string{"local", "batched", "ahead"} {
				clk := newClock()
				m := mem.New()
				m.Now = clk.Now
				var st store.Store = m
				var ahead *aheadStore
				switch kind {
				case "batched":
					st = batchedStore{m}
				case "ahead":
					ahead = newAheadStore(m)
					st = ahead
				}
				got := runAheadScript(t, cfg, st, m, clk)
				if want == nil {
					want = got
					continue
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s store:\n%s\nwant (local store):\n%s", kind, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if ahead == nil {
					continue
				}
				ops := ahead.ops()
				if order[0] == CheckRateLimit {
					// Every greylisted request's reads went with the rate limit's add.
					if ops["getmulti"] != 0 || ops["get"] != 0 || ops["windowadd_getmulti"] == 0 {
						t.Errorf("rate limit first: calls %v, want the reads carried by windowadd_getmulti", ops)
					}
				} else if ops["windowadd_getmulti"] != 0 {
					t.Errorf("greylisting first: calls %v, want no read ahead", ops)
				}
			}
			if !strings.Contains(strings.Join(want, "\n"), "Rate limit exceeded") || !strings.Contains(strings.Join(want, "\n"), "auto-whitelisted") {
				t.Fatalf("the script no longer reaches every state:\n%s", strings.Join(want, "\n"))
			}
		})
	}
}

// TestReadAheadOnlyWhenGreylistingReads: no read ahead for an exempt or
// authenticated client, for a later recipient of a counted message (the rate
// limit makes no call), nor when the greylist's SPF exemption must be asked
// first.
func TestReadAheadOnlyWhenGreylistingReads(t *testing.T) {
	clk := newClock()
	m := mem.New()
	m.Now = clk.Now
	st := newAheadStore(m)
	cfg := aheadConfig()
	cfg.RateLimit.Limits[0].Recipients = 0
	s := newDirect(t, cfg, Deps{Store: st, Now: clk.Now})
	cs := &connState{}
	for _, tc := range []struct {
		attrs []string
		want  map[string]int
	}{
		{[]string{"instance", "x1"}, map[string]int{"windowadd_getmulti": 1, "set": 1}},
		{[]string{"instance", "x1", "recipient", "b@example.com"}, map[string]int{"getmulti": 1, "set": 1}}, // no count
		{[]string{"instance", "x2", "client_address", "198.51.100.9"}, map[string]int{"windowadd": 1}},
		{[]string{"instance", "x3", "sasl_username", "alice"}, map[string]int{"windowadd": 1}},
	} {
		evalDirect(t, s, cs, tc.attrs...)
		if got := st.ops(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: calls %v, want %v", tc.attrs, got, tc.want)
		}
	}
	cfg.Greylist.ExemptSPFPass = true
	s = newDirect(t, cfg, Deps{Store: st, Now: clk.Now, Resolver: &mockdns.Resolver{}})
	evalDirect(t, s, &connState{}, "instance", "y1")
	if got := st.ops(); got["windowadd_getmulti"] != 0 || got["windowadd"] != 1 {
		t.Errorf("with an SPF exemption to ask: calls %v, want a plain window add", got)
	}
}

// TestReadAheadStoreFailures: a failed window add is the rate limit's failure
// as before (fail-closed answers for it; fail-open counts it and greylisting
// reads for itself), and reads that failed are read again, not taken as empty.
func TestReadAheadStoreFailures(t *testing.T) {
	down := fmt.Errorf("redis windowadd: %w: connection refused", store.ErrUnavailable)
	for _, mode := range []string{FailClosed, FailOpen} {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			m := mem.New()
			m.Now = clk.Now
			st := newAheadStore(m)
			st.addErr = down
			cfg := aheadConfig()
			cfg.StoreFailure = mode
			s := newDirect(t, cfg, Deps{Store: st, Now: clk.Now})
			d := evalDirect(t, s, nil)
			if mode == FailClosed {
				if d.action != tempFail || d.check != CheckRateLimit || !errors.Is(d.err, store.ErrUnavailable) {
					t.Fatalf("fail closed: %+v", d)
				}
				if n := counterValue(s.m.storeFailures.WithLabelValues(CheckRateLimit, FailClosed)); n != 1 {
					t.Errorf("store failures = %v", n)
				}
				if ops := st.ops(); ops["getmulti"] != 0 || ops["set"] != 0 {
					t.Errorf("greylisting ran after the rate limit failed closed: %v", ops)
				}
				return
			}
			if d.action.Verb != VerbDeferIfPermit || d.check != CheckGreylist || len(d.notes) != 1 || !strings.Contains(d.notes[0], "ratelimit: rate limit ip-hour") {
				t.Fatalf("fail open: %+v", d)
			}
			if n := counterValue(s.m.storeFailures.WithLabelValues(CheckRateLimit, FailOpen)); n != 1 {
				t.Errorf("store failures = %v", n)
			}
			if ops := st.ops(); ops["getmulti"] != 1 {
				t.Errorf("greylisting did not read for itself: %v", ops)
			}
		})
	}
	t.Run("reads failed", func(t *testing.T) {
		clk := newClock()
		m := mem.New()
		m.Now = clk.Now
		st := newAheadStore(m)
		s := newDirect(t, aheadConfig(), Deps{Store: st, Now: clk.Now})
		evalDirect(t, s, nil, "instance", "r1") // new triplet
		st.readsFail = true
		clk.Add(301 * time.Second)
		d := evalDirect(t, s, nil, "instance", "r2")
		if d.action.Verb != VerbPrepend {
			t.Fatalf("retry after the delay with the read ahead failed: %+v", d)
		}
		if ops := st.ops(); ops["getmulti"] != 1 {
			t.Errorf("greylisting did not read again: %v", ops)
		}
	})
}
