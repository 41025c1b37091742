package spam_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/bayes"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// TestLearnPerUserTablesIndependent: a message the global table already has
// (autolearn, another user's report) must still train the user's table, and
// forgetting it for the user must reach the user's table.
func TestLearnPerUserTablesIndependent(t *testing.T) {
	ctx := context.Background()
	cfg := spam.DefaultConfig()
	cfg.Bayes.PerUser = true
	st := mem.New()
	e, err := spam.New(cfg, spam.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := e.Parse(strings.NewReader("Message-ID: <1@example.com>\nSubject: offer\n\ncheap pills\n"))
	userSpam := func() int64 {
		m, err := st.HGet(ctx, "bayes:user:bob", []string{"#spam"})
		if err != nil {
			t.Fatal(err)
		}
		return m["#spam"]
	}
	if err := e.Learn(ctx, msg, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.Learn(ctx, msg, true, "bob"); err != nil {
		t.Fatalf("learn for bob after the global table: %v", err)
	}
	if n := userSpam(); n != 1 {
		t.Errorf("user:bob #spam = %d, want 1", n)
	}
	if err := e.Learn(ctx, msg, true, "bob"); !errors.Is(err, bayes.ErrAlreadyLearned) {
		t.Errorf("third learn: %v, want ErrAlreadyLearned (both tables have it)", err)
	}
	if err := e.Forget(ctx, msg, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.Forget(ctx, msg, "bob"); err != nil {
		t.Fatalf("forget for bob after the global table: %v", err)
	}
	if n := userSpam(); n != 0 {
		t.Errorf("user:bob #spam = %d after forget, want 0", n)
	}
	if err := e.Forget(ctx, msg, "bob"); !errors.Is(err, bayes.ErrNotLearned) {
		t.Errorf("second forget: %v, want ErrNotLearned", err)
	}
}

// TestMultipleScoresPerHit: tflags multiple counts each hit, up to maxhits,
// and the score is added per hit (SpamAssassin 3.0 on).
func TestMultipleScoresPerHit(t *testing.T) {
	e := newEngine(t, spam.DefaultConfig(), spam.WithRuleText("t.cf", `
body     T_MULTI_FREE  /\bfree\b/i
tflags   T_MULTI_FREE  multiple maxhits=3
score    T_MULTI_FREE  1
body     T_MULTI_ALL   /\bfree\b/i
tflags   T_MULTI_ALL   multiple
score    T_MULTI_ALL   0.5
body     T_ONCE_FREE   /\bfree\b/i
score    T_ONCE_FREE   0.25
`))
	v, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(
		"From: a@example.com\nSubject: hello\n\nfree free free\n\nfree free free\n")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"T_MULTI_FREE": 3, "T_MULTI_ALL": 3, "T_ONCE_FREE": 0.25}
	for _, s := range v.Symbols {
		if w, ok := want[s.Name]; ok {
			if s.Score != w {
				t.Errorf("%s scored %.2f, want %.2f", s.Name, s.Score, w)
			}
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing symbols %v in %v", want, v.Symbols)
	}
}
