package bayes_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/spam/bayes"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// raw returns the packed values of tokens in table, decoded as the two
// halves an unsigned reading gives (what a borrow would corrupt).
func raw(t *testing.T, st store.Store, table string, tokens ...string) map[string][2]int64 {
	t.Helper()
	fields := make([]string, len(tokens))
	for i, tok := range tokens {
		fields[i] = bayes.HashToken(tok)
	}
	m, err := st.HGet(context.Background(), "bayes:"+table, fields)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]int64{}
	for i, tok := range tokens {
		v := m[fields[i]]
		out[tok] = [2]int64{v >> 32, v & (1<<32 - 1)}
	}
	return out
}

var tableSeq atomic.Int64

func freshTable() string { return fmt.Sprintf("t%d-%d", time.Now().UnixNano(), tableSeq.Add(1)) }

// TestMoveAndForgetSubtractWhatWasLearned: the tokens a message gives when
// it is moved or forgotten may differ from those it gave when learned (its
// headers changed, the tokenizer changed). Subtracting the new set used to
// borrow between the packed halves (ham 0 − 1 became spam −1, ham 2^32−1).
func TestMoveAndForgetSubtractWhatWasLearned(t *testing.T) {
	ctx := context.Background()
	for name, st := range backends(t) {
		c := bayes.New(st, bayes.DefaultParams())
		table := freshTable() // Redis keeps state between -count runs
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		must(c.Learn(ctx, table, "m1", []string{"a", "b"}, false))
		must(c.Learn(ctx, table, "m2", []string{"a"}, false))
		// m1 moves to spam, now giving tokens {a, c}: "b" was learned, "c" was not.
		must(c.Learn(ctx, table, "m1", []string{"a", "c"}, true))
		got := raw(t, st, table, "a", "b", "c")
		want := map[string][2]int64{"a": {1, 1}, "b": {0, 0}, "c": {1, 0}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: after move {spam, ham} = %v, want %v", name, got, want)
		}
		// Forgotten with yet other tokens: exactly what the move added goes.
		must(c.Forget(ctx, table, "m1", []string{"d"}))
		got = raw(t, st, table, "a", "b", "c", "d")
		want = map[string][2]int64{"a": {0, 1}, "b": {0, 0}, "c": {0, 0}, "d": {0, 0}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: after forget {spam, ham} = %v, want %v", name, got, want)
		}
		if s, h, _ := c.Counts(ctx, table); s != 0 || h != 1 {
			t.Errorf("%s: counts %d/%d, want 0/1", name, s, h)
		}
	}
}

// TestLegacyRecordNeverBorrows: a message recorded before the learned hashes
// were kept (record "spam") is forgotten with its current tokens, but only
// where the spam half has something to take.
func TestLegacyRecordNeverBorrows(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	c := bayes.New(st, bayes.DefaultParams())
	st.HIncr(ctx, "bayes:global", map[string]int64{bayes.HashToken("a"): 1 << 32, bayes.HashToken("h"): 1, "#spam": 1, "#ham": 1})
	st.Set(ctx, "bayes:global:msg:old", []byte("spam"), 0)
	if err := c.Forget(ctx, "global", "old", []string{"a", "h", "x"}); err != nil {
		t.Fatal(err)
	}
	got := raw(t, st, "global", "a", "h", "x")
	if want := map[string][2]int64{"a": {0, 0}, "h": {0, 1}, "x": {0, 0}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("{spam, ham} = %v, want %v", got, want)
	}
}

// TestClassifyReadsBorrowedValues: a value an earlier borrow damaged
// (spam −1, ham 2 packed as −4294967294) reads as spam 0, ham 2 instead of
// being ignored for ever.
func TestClassifyReadsBorrowedValues(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	c := bayes.New(st, bayes.DefaultParams())
	st.HIncr(ctx, "bayes:global", map[string]int64{bayes.HashToken("x"): -1<<32 + 2, "#spam": 2, "#ham": 2})
	res, err := c.Classify(ctx, "global", []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Clues) != 1 || res.Clues[0].Spam != 0 || res.Clues[0].Ham != 2 {
		t.Errorf("clues %+v, want x with spam 0, ham 2", res.Clues)
	}
}

// TestConcurrentLearnCountedOnce: learners of one message racing (the
// milter's autolearn and `dovetail learn`, two hosts) count it once.
func TestConcurrentLearnCountedOnce(t *testing.T) {
	ctx := context.Background()
	for name, st := range backends(t) {
		c := bayes.New(st, bayes.DefaultParams())
		table := freshTable() // Redis keeps state between -count runs
		var wg sync.WaitGroup
		var mu sync.Mutex
		results := map[string]int{}
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.Learn(ctx, table, "same", []string{"tok"}, true)
				mu.Lock()
				results[fmt.Sprint(err)]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if s, h, _ := c.Counts(ctx, table); s != 1 || h != 0 {
			t.Errorf("%s: #spam=%d #ham=%d, want 1/0 (results %v)", name, s, h, results)
		}
		if got := raw(t, st, table, "tok")["tok"]; got != [2]int64{1, 0} {
			t.Errorf("%s: tok = %v, want {1 0}", name, got)
		}
		if results["<nil>"] != 1 || results[bayes.ErrAlreadyLearned.Error()] != 15 {
			t.Errorf("%s: results %v, want one success", name, results)
		}
	}
}

// TestConcurrentMovesAndForgets: learn, move and forget of a few messages
// racing leave the counts equal to what the records say.
func TestConcurrentMovesAndForgets(t *testing.T) {
	ctx := context.Background()
	for name, st := range backends(t) {
		c := bayes.New(st, bayes.DefaultParams())
		table := freshTable() // Redis keeps state between -count runs
		digests := []string{"d0", "d1", "d2"}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 1))
				for range 40 {
					d := digests[r.IntN(len(digests))]
					toks := []string{"common", d, fmt.Sprintf("x%d", r.IntN(3))}
					var err error
					switch r.IntN(3) {
					case 0:
						err = c.Learn(ctx, table, d, toks, true)
					case 1:
						err = c.Learn(ctx, table, d, toks, false)
					default:
						err = c.Forget(ctx, table, d, toks)
					}
					if err != nil && !errors.Is(err, bayes.ErrAlreadyLearned) && !errors.Is(err, bayes.ErrNotLearned) && !errors.Is(err, bayes.ErrBusy) {
						t.Errorf("%s: %v", name, err)
					}
				}
			}()
		}
		wg.Wait()
		// Forget everything: the table must come back to zero, no half negative.
		for _, d := range digests {
			if err := c.Forget(ctx, table, d, nil); err != nil && !errors.Is(err, bayes.ErrNotLearned) {
				t.Fatal(err)
			}
		}
		toks := []string{"common", "d0", "d1", "d2", "x0", "x1", "x2"}
		for tok, v := range raw(t, st, table, toks...) {
			if v != [2]int64{0, 0} {
				t.Errorf("%s: %s = %v after forgetting all", name, tok, v)
			}
		}
		if s, h, _ := c.Counts(ctx, table); s != 0 || h != 0 {
			t.Errorf("%s: counts %d/%d after forgetting all", name, s, h)
		}
	}
}

// failing wraps a store and fails the next calls of the named method whose
// key contains match.
type failing struct {
	store.Store
	mu     sync.Mutex
	method string
	match  string
	n      int
}

func (f *failing) fail(method, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 && method == f.method && strings.Contains(key, f.match) {
		f.n--
		return fmt.Errorf("injected %s failure: %w", method, store.ErrUnavailable)
	}
	return nil
}

func (f *failing) failNext(method, match string) {
	f.mu.Lock()
	f.method, f.match, f.n = method, match, 1
	f.mu.Unlock()
}

func (f *failing) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := f.fail("Set", key); err != nil {
		return err
	}
	return f.Store.Set(ctx, key, v, ttl)
}

func (f *failing) SetNX(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error) {
	if err := f.fail("SetNX", key); err != nil {
		return false, err
	}
	return f.Store.SetNX(ctx, key, v, ttl)
}

func (f *failing) HIncr(ctx context.Context, key string, d map[string]int64) error {
	if err := f.fail("HIncr", key); err != nil {
		return err
	}
	return f.Store.HIncr(ctx, key, d)
}

func (f *failing) Delete(ctx context.Context, keys ...string) error {
	if err := f.fail("Delete", strings.Join(keys, " ")); err != nil {
		return err
	}
	return f.Store.Delete(ctx, keys...)
}

// TestLearnFailureThenRetry: a store failure at any step of learning, moving
// or forgetting leaves counts and record agreeing, so a retry neither counts
// twice nor answers "already learned" for a message never counted.
func TestLearnFailureThenRetry(t *testing.T) {
	ctx := context.Background()
	toks := []string{"a", "b"}
	counts := func(t *testing.T, c *bayes.Classifier, st store.Store, s, h int64) {
		t.Helper()
		gs, gh, _ := c.Counts(ctx, "global")
		a := raw(t, st, "global", "a")["a"]
		if gs != s || gh != h || a != [2]int64{s, h} {
			t.Errorf("#spam=%d #ham=%d a=%v, want %d/%d", gs, gh, a, s, h)
		}
	}
	steps := []struct{ method, match string }{{"SetNX", ":msg:"}, {"Set", ":msg:"}, {"SetNX", ":retire:"}, {"HIncr", "bayes:global"}}
	for _, step := range steps {
		t.Run("learn/"+step.method+step.match, func(t *testing.T) {
			st := &failing{Store: mem.New()}
			c := bayes.New(st, bayes.DefaultParams())
			st.failNext(step.method, step.match)
			// The first attempt fails when the failing call is on its path.
			_ = c.Learn(ctx, "global", "m", toks, true)
			if err := c.Learn(ctx, "global", "m", toks, true); err != nil && !errors.Is(err, bayes.ErrAlreadyLearned) {
				t.Fatalf("retry: %v", err)
			}
			counts(t, c, st, 1, 0)
		})
		t.Run("move/"+step.method+step.match, func(t *testing.T) {

			st := &failing{Store: mem.New()}
			c := bayes.New(st, bayes.DefaultParams())
			if err := c.Learn(ctx, "global", "m", toks, true); err != nil {
				t.Fatal(err)
			}
			st.failNext(step.method, step.match)
			if err := c.Learn(ctx, "global", "m", toks, false); err == nil {
				counts(t, c, st, 0, 1) // the failing call was not on this path
				return
			}
			counts(t, c, st, 1, 0)
			if err := c.Learn(ctx, "global", "m", toks, false); err != nil {
				t.Fatalf("retry: %v", err)
			}
			counts(t, c, st, 0, 1)
		})
	}
	for _, step := range append(steps, struct{ method, match string }{"Delete", ":msg:"}) {
		t.Run("forget/"+step.method+step.match, func(t *testing.T) {
			st := &failing{Store: mem.New()}
			c := bayes.New(st, bayes.DefaultParams())
			if err := c.Learn(ctx, "global", "m", toks, true); err != nil {
				t.Fatal(err)
			}
			st.failNext(step.method, step.match)
			if err := c.Forget(ctx, "global", "m", toks); err == nil {
				counts(t, c, st, 0, 0) // the failing call was not on this path
				return
			}
			counts(t, c, st, 1, 0)
			if err := c.Forget(ctx, "global", "m", toks); err != nil {
				t.Fatalf("retry: %v", err)
			}
			counts(t, c, st, 0, 0)
		})
	}
}

// TestTokensLeaveOutOwnHeaders: learning a Junk folder must not teach Bayes
// the X-Spam-* verdict dovetail wrote, nor our Authentication-Results.
func TestTokensLeaveOutOwnHeaders(t *testing.T) {
	m := parse("From: a@example.com\nSubject: hi\nMessage-ID: <1@example.com>\nX-Spam-Flag: YES\nX-Spam-Score: 7.0\n" +
		"X-Spam-Level: *******\nX-Spam-Status: Yes, score=7.0\nAuthentication-Results: mx.example.org; spf=pass\n" +
		"X-Other: 1\n\nhello there\n")
	toks := bayes.Tokenizer{AuthservIDs: []string{"MX.example.org"}}.Tokens(m)
	for _, tok := range toks {
		if strings.HasPrefix(tok, "hn:x-spam") || tok == "hn:authentication-results" {
			t.Errorf("own header token %q", tok)
		}
	}
	if !slices.Contains(toks, "hn:x-other") {
		t.Errorf("hn:x-other missing from %q", toks)
	}
	// Someone else's Authentication-Results is evidence like any header.
	other := parse("Subject: hi\nAuthentication-Results: (comment) \"relay.example.net\" 1; spf=pass\n\nhello\n")
	if toks := (bayes.Tokenizer{AuthservIDs: []string{"mx.example.org"}}).Tokens(other); !slices.Contains(toks, "hn:authentication-results") {
		t.Errorf("foreign Authentication-Results dropped: %q", toks)
	}
	if bayes.Digest(m) != bayes.Digest(parse("From: a@example.com\nSubject: hi\nMessage-ID: <1@example.com>\n\nhello there\n")) {
		t.Error("X-Spam-* fields change the digest")
	}
}

// TestDigest: a message is identified by its Message-ID, else by Date and
// its whole body (attachments included), whatever the line endings and
// trailing blank lines of the copy.
func TestDigest(t *testing.T) {
	const noID = "From: a@example.com\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nSubject: pics\n" +
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: %s\nContent-Transfer-Encoding: base64\n\n%s\n--b--\n"
	img := fmt.Sprintf(noID, "image/png", "iVBORw0KGgo=")
	zip := fmt.Sprintf(noID, "application/zip", "UEsDBAo=")
	if bayes.Digest(parse(img)) == bayes.Digest(parse(zip)) {
		t.Error("image-only and zip-only messages without Message-ID share a digest")
	}
	crlf := strings.ReplaceAll(img, "\n", "\r\n")
	for _, v := range []string{crlf, img + "\n", img + "\n\n", crlf + "\r\n"} {
		if bayes.Digest(parse(v)) != bayes.Digest(parse(img)) {
			t.Errorf("copy %q has another digest", v[len(v)-12:])
		}
	}
	if bayes.Digest(parse(img)) == bayes.Digest(parse(strings.Replace(img, "10:00:00", "11:00:00", 1))) {
		t.Error("Date does not enter the digest of a message without Message-ID")
	}
	withID := "Message-ID: <x@example.com>\nSubject: a\n\none\n"
	if bayes.Digest(parse(withID)) != bayes.Digest(parse("Received: by mx\nMessage-ID:  <x@example.com>\nSubject: a\n\none\n\n")) {
		t.Error("same Message-ID, other digest")
	}
}
