package spam_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

const gtube = "From: a@example.com\r\nTo: b@example.org\r\nSubject: test\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"

const clean = "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: lunch\r\n" +
	"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <2@example.com>\r\nX-Spam-Flag: YES\r\nX-Spam-Status: No\r\n\r\nSee you at noon.\r\n"

func newEngine(t *testing.T, cfg spam.Config, opts ...spam.Option) *spam.Engine {
	t.Helper()
	e, err := spam.New(cfg, append([]spam.Option{spam.WithStore(mem.New())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if p := e.Problems(); len(p) > 0 {
		t.Fatalf("default rules have problems: %v", p)
	}
	return e
}

func TestGTUBEAndClean(t *testing.T) {
	e := newEngine(t, spam.DefaultConfig())
	v, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(gtube)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Action != spam.Reject || v.Score < 1000 || !v.IsSpam {
		t.Fatalf("GTUBE: %+v", v)
	}
	msg, _ := e.Parse(strings.NewReader(clean))
	v, err = e.Score(context.Background(), &spam.Input{Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	if v.Action != spam.NoAction || v.IsSpam {
		t.Fatalf("clean: %+v", v)
	}
	remove, add := spam.HeaderEdits(v, msg, spam.HeaderOptions{})
	if strings.Join(remove, ",") != "X-Spam-Flag,X-Spam-Status" {
		t.Errorf("remove = %v", remove)
	}
	for _, h := range add {
		if h.Name == "X-Spam-Flag" {
			t.Errorf("clean message flagged")
		}
		if h.Name == "X-Spam-Status" && !strings.HasPrefix(h.Value, "No, score=") {
			t.Errorf("status %q", h.Value)
		}
	}
}

func TestStatusHeaderFormat(t *testing.T) {
	v := spam.Verdict{Score: 7.3, Required: 5, IsSpam: true, Autolearn: "no",
		Symbols: []spam.Symbol{{Name: "A"}, {Name: "B"}}}
	got := spam.StatusValue(v, "dovetail")
	if got = strings.ReplaceAll(got, "\r\n\t", " "); got != "Yes, score=7.3 required=5.0 tests=A,B autolearn=no version=dovetail" {
		t.Errorf("got %q", got)
	}
	var many []spam.Symbol
	for i := 0; i < 30; i++ {
		many = append(many, spam.Symbol{Name: "SOME_LONG_RULE_NAME"})
	}
	v.Symbols = many
	for _, line := range strings.Split(spam.StatusValue(v, "dovetail"), "\r\n") {
		if len(line)+len("X-Spam-Status: ") > 80 {
			t.Errorf("line too long: %q", line)
		}
	}
	_, add := spam.HeaderEdits(v, nil, spam.HeaderOptions{})
	want := map[string]string{"X-Spam-Flag": "YES", "X-Spam-Score": "7.3", "X-Spam-Level": "*******"}
	for _, h := range add {
		if w, ok := want[h.Name]; ok && h.Value != w {
			t.Errorf("%s = %q, want %q", h.Name, h.Value, w)
		}
	}
}

func TestListsAndDomainThresholds(t *testing.T) {
	cfg := spam.DefaultConfig()
	cfg.Allow.Networks = []string{"192.0.2.0/24"}
	cfg.Deny.Domains = []string{"spammer.test"}
	low := 2.0
	cfg.Domains = map[string]spam.Thresholds{"strict.test": {AddHeader: &low}}
	e := newEngine(t, cfg, spam.WithRuleText("t.cf", "body LUNCH /lunch/i\nscore LUNCH 3\n"))
	ctx := context.Background()
	cases := []struct {
		name string
		in   spam.Input
		want spam.Action
	}{
		{"allow net beats GTUBE", spam.Input{Raw: strings.NewReader(gtube), ClientIP: net.ParseIP("192.0.2.7")}, spam.NoAction},
		{"deny domain", spam.Input{Raw: strings.NewReader(clean), MailFrom: "x@mail.spammer.test"}, spam.Reject},
		{"default domain", spam.Input{Raw: strings.NewReader(clean), Rcpts: []string{"u@other.test"}}, spam.NoAction},
		{"strict domain", spam.Input{Raw: strings.NewReader(clean), Rcpts: []string{"u@strict.test"}}, spam.AddHeader},
	}
	for _, c := range cases {
		v, err := e.Score(ctx, &c.in)
		if err != nil {
			t.Fatal(err)
		}
		if v.Action != c.want {
			t.Errorf("%s: action %q, want %q (%+v)", c.name, v.Action, c.want, v)
		}
	}
}

func TestCheckErrorsAreSymbols(t *testing.T) {
	boom := spam.CheckFunc{ID: "boom", Fn: func(context.Context, *spam.Input, *spam.Message) ([]spam.Symbol, error) {
		panic("kaboom")
	}}
	fail := spam.CheckFunc{ID: "dnsbl", Fn: func(context.Context, *spam.Input, *spam.Message) ([]spam.Symbol, error) {
		return []spam.Symbol{{Name: "RBL_HIT", Score: 2}}, errors.New("timeout")
	}}
	e := newEngine(t, spam.DefaultConfig(), spam.WithChecks(boom, fail))
	v, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(clean)})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range v.Symbols {
		names[s.Name] = true
	}
	for _, n := range []string{"BOOM_ERROR", "DNSBL_ERROR", "RBL_HIT"} {
		if !names[n] {
			t.Errorf("symbol %s missing: %v", n, v.Symbols)
		}
	}
}

func TestLearnForget(t *testing.T) {
	cfg := spam.DefaultConfig()
	e := newEngine(t, cfg)
	ctx := context.Background()
	msg, _ := e.Parse(strings.NewReader(clean))
	if err := e.Learn(ctx, msg, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.Learn(ctx, msg, true, ""); err == nil {
		t.Error("learning twice should report it")
	}
	if err := e.Learn(ctx, msg, false, ""); err != nil {
		t.Fatal(err)
	}
	s, h, _ := e.BayesCounts(ctx)
	if s != 0 || h != 1 {
		t.Errorf("after move: spam=%d ham=%d", s, h)
	}
	if err := e.Forget(ctx, msg, ""); err != nil {
		t.Fatal(err)
	}
	s, h, _ = e.BayesCounts(ctx)
	if s != 0 || h != 0 {
		t.Errorf("after forget: spam=%d ham=%d", s, h)
	}
}

// downStore is a store whose backend is gone.
type downStore struct{ *mem.Store }

func (downStore) HGet(context.Context, string, []string) (map[string]int64, error) {
	return nil, store.ErrUnavailable
}

// TestDomainThresholdsCaseInsensitive: domain names are case-insensitive, so
// domains: {Strict.Test: ...} applies to u@strict.test; the key was looked
// up with the recipient's lower-cased domain only and silently ignored.
func TestDomainThresholdsCaseInsensitive(t *testing.T) {
	cfg := spam.DefaultConfig()
	low := 2.0
	cfg.Domains = map[string]spam.Thresholds{"Strict.Test": {AddHeader: &low}}
	e := newEngine(t, cfg, spam.WithRuleText("t.cf", "body LUNCH /lunch/i\nscore LUNCH 3\n"))
	v, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(clean), Rcpts: []string{"u@STRICT.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Action != spam.AddHeader {
		t.Errorf("action %q, want %q from the Strict.Test thresholds", v.Action, spam.AddHeader)
	}
	cfg.Domains["strict.test"] = spam.Thresholds{}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "domains") {
		t.Errorf("Strict.Test and strict.test both configured: %v, want an error", err)
	}
}

// A Bayes store that cannot be read fails the scan (a temporary failure for
// the milter) by default; bayes.on_unavailable: skip scores without it.
func TestBayesStoreDown(t *testing.T) {
	cfg := spam.DefaultConfig()
	e := newEngine(t, cfg, spam.WithStore(downStore{mem.New()}))
	_, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(clean)})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("store down: err %v, want store.ErrUnavailable", err)
	}
	cfg.Bayes.OnUnavailable = spam.BayesSkip
	e = newEngine(t, cfg, spam.WithStore(downStore{mem.New()}))
	v, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(clean)})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range v.Symbols {
		found = found || s.Name == "BAYES_UNAVAILABLE"
	}
	if !found || v.Bayes.Skipped != "store unavailable" {
		t.Errorf("skip: symbols %v, bayes %+v", v.Symbols, v.Bayes)
	}
	cfg.Bayes.OnUnavailable = "ignore"
	if err := cfg.Bayes.Validate(); err == nil {
		t.Error("on_unavailable: ignore accepted")
	}
}

type panicStore struct{ *mem.Store }

func (panicStore) HGet(context.Context, string, []string) (map[string]int64, error) {
	panic("store client bug")
}

// TestBayesPanicFailsScan: a panic in the Bayes goroutine (tokenizer or
// store client) is a failed scan, as a rule panic is for the milter. Bayes
// runs in a goroutine of its own, where neither the milter's recover nor any
// other reaches: the panic ended the whole process (milter, lmtpd, policyd).
func TestBayesPanicFailsScan(t *testing.T) {
	e := newEngine(t, spam.DefaultConfig(), spam.WithStore(panicStore{mem.New()}))
	_, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(clean)})
	if err == nil || !strings.Contains(err.Error(), "store client bug") {
		t.Fatalf("Bayes panic: err %v, want a failed scan naming the panic", err)
	}
}

// A message without Message-Id is MISSING_MID only: the missing header reads
// as "" and used to match MID_NO_DOMAIN's pattern too (1.5 points for one fault).
func TestMissingMessageIDScoredOnce(t *testing.T) {
	e := newEngine(t, spam.DefaultConfig())
	has := func(raw, name string) bool {
		v, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(raw)})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range v.Symbols {
			if s.Name == name {
				return true
			}
		}
		return false
	}
	noMID := "From: a@example.com\r\nTo: b@example.org\r\nSubject: x\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n"
	if !has(noMID, "MISSING_MID") || has(noMID, "MID_NO_DOMAIN") {
		t.Error("no Message-Id: want MISSING_MID and not MID_NO_DOMAIN")
	}
	if !has(strings.Replace(noMID, "Subject", "Message-Id: <12345>\r\nSubject", 1), "MID_NO_DOMAIN") {
		t.Error("Message-Id without a domain: MID_NO_DOMAIN missing")
	}
}

// TestRulesTimeoutKeepsBayes: rules that use up the scan budget give a
// partial verdict (SCAN_TIMEOUT) that still has Bayes. Bayes used to run
// after the rules with the spent budget, so the scan failed as "Bayes store:
// context deadline exceeded" — a 451 on every retry of the message and a
// store error counted while the store was fine — and an autolearn could
// never learn from the partial result either way.
func TestRulesTimeoutKeepsBayes(t *testing.T) {
	var rules strings.Builder
	for i := range 15000 {
		fmt.Fprintf(&rules, "rawbody T_SLOW_%d /[a-z]{3}\\d{%d}q/\n", i, i%7+1)
	}
	cfg := spam.DefaultConfig()
	cfg.Timeout = config.Duration(300 * time.Millisecond)
	cfg.Bayes.MinSpam, cfg.Bayes.MinHam = 1, 1
	cfg.Bayes.Autolearn = true
	st := mem.New()
	e := newEngine(t, cfg, spam.WithStore(st), spam.WithRuleText("slow.cf", rules.String()))
	ctx := context.Background()
	for i, raw := range []string{gtube, clean} {
		m, _ := e.Parse(strings.NewReader(strings.Replace(raw, "Message-ID: <", fmt.Sprintf("Message-ID: <t%d.", i), 1)))
		if err := e.Learn(ctx, m, i == 0, ""); err != nil {
			t.Fatal(err)
		}
	}
	body := strings.Repeat("lunch at noon, see you there ", 64<<10/29)
	v, err := e.Score(ctx, &spam.Input{Raw: strings.NewReader(strings.Replace(clean, "See you at noon.", body, 1))})
	if err != nil {
		t.Fatalf("rules out of budget: %v, want a partial verdict", err)
	}
	names := map[string]bool{}
	for _, s := range v.Symbols {
		names[s.Name] = true
	}
	if !names["SCAN_TIMEOUT"] || v.Bayes.Probability < 0 {
		t.Errorf("symbols %v, bayes %+v: want SCAN_TIMEOUT and a Bayes result", v.Symbols, v.Bayes)
	}
	if v.Autolearn != "no" {
		t.Errorf("autolearn %q from a partial scan, want no", v.Autolearn)
	}
}

// TestSubjectTemplateOnePass: the template's %s and %d are filled in once;
// a "%d" or "%s" in the message's own Subject is text, not a placeholder
// ("50%discount" became "507.0iscount").
func TestSubjectTemplateOnePass(t *testing.T) {
	cfg := spam.DefaultConfig()
	rs := 5.0
	cfg.Actions.RewriteSubject = &rs
	cfg.SubjectTemplate = "[SPAM %d] %s"
	e := newEngine(t, cfg, spam.WithRuleText("t.cf", "body T_OFFER /offer/\nscore T_OFFER 7\n"))
	raw := "From: a@example.com\r\nTo: b@example.org\r\nSubject: 50%discount %s offer\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <3@example.com>\r\n\r\noffer\r\n"
	v, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(raw)})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("[SPAM %.1f] 50%%discount %%s offer", v.Score); v.Action != spam.RewriteSubject || v.Subject != want {
		t.Errorf("action %q subject %q, want %q", v.Action, v.Subject, want)
	}
}
