package bayes_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/spam/bayes"
	"github.com/dovetail-mail/dovetail/spam/message"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
	"github.com/dovetail-mail/dovetail/store/redis"
	"github.com/dovetail-mail/dovetail/store/sqlite"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func parse(s string) *message.Message { return message.Parse([]byte(s), message.Limits{}) }

func TestTokens(t *testing.T) {
	m := parse("From: \"Shop\" <deals@shop.example.com>\nSubject: Cheap pills NOW\nMessage-ID: <1@mx.example.com>\n" +
		"Content-Type: text/html\n\n<p>Buy cheap pills at <a href=\"http://pills.example.net/buy.php?id=1\">here</a> 今日は</p>")
	toks := bayes.Tokens(m)
	for _, want := range []string{"cheap", "w:cheap pills", "SUBJECT:cheap", "SUBJECT:w:cheap pills", "f:deals@shop.example.com",
		"fd:shop.example.com", "mid:mx.example.com", "u:pills.example.net", "ud:example.net", "up:buy", "uq:1",
		"h:a", "ct:text/html", "今日", "日は"} {
		if !slices.Contains(toks, want) {
			t.Errorf("token %q missing from %q", want, toks)
		}
	}
	for _, tok := range toks {
		if tok == "Date" || len(tok) > 80 {
			t.Errorf("unexpected token %q", tok)
		}
	}
}

// TestTokensPaddedBody: random words appended to the body (a "hash buster")
// used to fill the whole token budget, so the sender, Received, MIME and
// URI tokens — the evidence padding cannot change — were never looked up.
// The body text has a share of the budget; the rest is kept for the others.
func TestTokensPaddedBody(t *testing.T) {
	var pad strings.Builder
	for i := range bayes.MaxTokens {
		fmt.Fprintf(&pad, "pad%05d ", i)
	}
	m := parse("From: Shop <deals@shop.example.com>\nSubject: Cheap pills\n" +
		"Received: from mx.shop.example.com (mx.shop.example.com [198.51.100.7])\n\n" +
		"Buy cheap pills at http://pills.example.net/buy now\n\n" + pad.String())
	toks := bayes.Tokens(m)
	if len(toks) > bayes.MaxTokens {
		t.Errorf("%d tokens, more than %d", len(toks), bayes.MaxTokens)
	}
	for _, want := range []string{"cheap", "SUBJECT:pills", "f:deals@shop.example.com", "fd:shop.example.com",
		"rcv:mx.shop.example.com", "rip:198.51.100.0", "u:pills.example.net", "ct:text/plain"} {
		if !slices.Contains(toks, want) {
			t.Errorf("token %q missing", want)
		}
	}
}

// backends returns every store the classifier must work on: mem, SQLite in a
// temp dir and Redis (skipped outside CI when redis-server is missing).
func backends(t *testing.T) map[string]store.Store {
	ctx := context.Background()
	out := map[string]store.Store{"mem": mem.New()}
	sq, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "state.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	out["sqlite"] = sq
	if !testing.Short() {
		r := testenv.Redis(t)
		// One Redis serves the package's tests, and -count=N runs a test N
		// times against it: each run gets keys of its own.
		rs, err := redis.New(redis.Options{Addrs: []string{r.Addr}, Prefix: fmt.Sprintf("bayes-test-%s-%d:", t.Name(), time.Now().UnixNano())})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Close() })
		out["redis"] = rs
	}
	return out
}

// TestConformance runs the same training and classification on every backend
// and expects identical probabilities.
func TestConformance(t *testing.T) {
	ctx := context.Background()
	spamTexts := []string{"cheap pills online buy now", "buy cheap watches now online", "cheap loans now buy online"}
	hamTexts := []string{"meeting notes for the project review", "project review moved to tuesday", "notes from the review meeting"}
	probe := bayes.Tokens(parse("Subject: x\n\nbuy cheap pills online now"))
	probeHam := bayes.Tokens(parse("Subject: x\n\nproject meeting notes review"))
	results := map[string][2]float64{}
	for name, st := range backends(t) {
		c := bayes.New(st, bayes.DefaultParams())
		for i, txt := range spamTexts {
			m := parse(fmt.Sprintf("Subject: s%d\n\n%s", i, txt))
			if err := c.Learn(ctx, "global", bayes.Digest(m), bayes.Tokens(m), true); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		var last *message.Message
		for i, txt := range hamTexts {
			last = parse(fmt.Sprintf("Subject: h%d\n\n%s", i, txt))
			if err := c.Learn(ctx, "global", bayes.Digest(last), bayes.Tokens(last), false); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if err := c.Learn(ctx, "global", bayes.Digest(last), bayes.Tokens(last), false); !errors.Is(err, bayes.ErrAlreadyLearned) {
			t.Errorf("%s: relearn: %v", name, err)
		}
		s, h, err := c.Counts(ctx, "global")
		if err != nil || s != 3 || h != 3 {
			t.Fatalf("%s: counts %d/%d %v", name, s, h, err)
		}
		rs, err := c.Classify(ctx, "global", probe)
		if err != nil {
			t.Fatal(err)
		}
		rh, _ := c.Classify(ctx, "global", probeHam)
		if rs.Prob < 0.9 || rh.Prob > 0.1 {
			t.Errorf("%s: spam probe %.3f, ham probe %.3f", name, rs.Prob, rh.Prob)
		}
		results[name] = [2]float64{rs.Prob, rh.Prob}
		if err := c.Forget(ctx, "global", bayes.Digest(last), bayes.Tokens(last)); err != nil {
			t.Fatal(err)
		}
		if _, h, _ := c.Counts(ctx, "global"); h != 2 {
			t.Errorf("%s: ham after forget = %d", name, h)
		}
	}
	ref := results["mem"]
	for name, r := range results {
		if math.Abs(r[0]-ref[0]) > 1e-9 || math.Abs(r[1]-ref[1]) > 1e-9 {
			t.Errorf("%s disagrees with mem: %v vs %v", name, r, ref)
		}
	}
}
