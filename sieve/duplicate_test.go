package sieve

import (
	"context"
	"errors"
	"testing"
	"time"
)

func duplicatePeriod(t *testing.T, src string, config map[string]string) time.Duration {
	t.Helper()
	res, err := mustCompile(t, src).Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg)), Config: config})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DuplicateMarks) != 1 {
		t.Fatalf("marks %v", res.DuplicateMarks)
	}
	return res.DuplicateMarks[0].Period
}

// TestDuplicateSecondsCapped: duplicate :seconds is capped at
// sieve_duplicate_max_period (7d unless configured), as Pigeonhole does. It
// was not capped at all: a script asking for a century made every delivery
// store an id for a hundred years (the duplicate store grew without bound),
// and past the time.Duration range the period wrapped around.
func TestDuplicateSecondsCapped(t *testing.T) {
	week := 7 * 24 * time.Hour
	for _, tc := range []struct {
		src    string
		config map[string]string
		want   time.Duration
	}{
		{`require "duplicate"; if duplicate :seconds 3153600000 { stop; }`, nil, week},
		{`require "duplicate"; if duplicate :seconds 20000000000 { stop; }`, nil, week},
		{`require "duplicate"; if duplicate :seconds 3600 { stop; }`, nil, time.Hour},
		{`require "duplicate"; if duplicate :seconds 3153600000 { stop; }`, map[string]string{"sieve_duplicate_max_period": "30d"}, 30 * 24 * time.Hour},
		{`require "duplicate"; if duplicate :seconds 172800 { stop; }`, map[string]string{"sieve_duplicate_max_period": "1d"}, 24 * time.Hour},
		{`require "duplicate"; if duplicate { stop; }`, nil, week},
	} {
		if got := duplicatePeriod(t, tc.src, tc.config); got != tc.want {
			t.Errorf("%s %v: period %v, want %v", tc.src, tc.config, got, tc.want)
		}
	}
}

// tracker is a DuplicateTracker answering seen and err for every id, counting
// the calls.
type tracker struct {
	seen  bool
	err   error
	calls int
}

func (tr *tracker) Check(ctx context.Context, id string) (bool, error) {
	tr.calls++
	return tr.seen, tr.err
}

// TestDuplicateTrackerFailure: a tracker that cannot tell whether an id was
// seen (its store is down) fails the run with ErrTemporary, wherever the
// duplicate test stands, and the error is no *RuntimeError (which would be
// answered with the implicit keep). The tracker's answer was a bool, so every
// store error read as "not seen": `if duplicate { discard; }` silently
// delivered the copy the user wanted discarded. A tracker that answers "not
// seen" without an error still runs the script's not-seen branch.
func TestDuplicateTrackerFailure(t *testing.T) {
	errDown := errors.New("store: backend unavailable: connection refused")
	for _, tc := range []struct {
		name, src string
	}{
		{"alone", `require "duplicate"; if duplicate { discard; stop; }`},
		{"uniqueid", `require "duplicate"; if duplicate :uniqueid "x" :seconds 60 { discard; stop; }`},
		{"not", `require "duplicate"; if not duplicate { keep; } else { discard; }`},
		{"anyof", `require "duplicate"; if anyof (false, duplicate) { discard; stop; }`},
		{"allof", `require "duplicate"; if allof (true, duplicate) { discard; stop; }`},
		{"nested", `require "duplicate"; if anyof (false, allof (true, not not duplicate)) { discard; }`},
		{"in a block", `require ["duplicate", "fileinto"]; if true { fileinto "A"; if duplicate { discard; } }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustCompile(t, tc.src)
			env := func(tr *tracker) *Env {
				return &Env{Message: NewMessage([]byte(testMsg)), Duplicates: tr}
			}

			tr := &tracker{err: errDown}
			res, err := s.Execute(context.Background(), env(tr))
			if !errors.Is(err, ErrTemporary) || !errors.Is(err, errDown) {
				t.Fatalf("error %v, want ErrTemporary wrapping the tracker's", err)
			}
			var re *RuntimeError
			if errors.As(err, &re) {
				t.Errorf("a tracker failure is a script runtime error: %v", err)
			}
			if tr.calls != 1 {
				t.Errorf("tracker asked %d times", tr.calls)
			}
			if res == nil || len(res.Errors) != 1 || !errors.Is(res.Errors[0], ErrTemporary) {
				t.Errorf("result errors %v", res)
			}

			// Not seen (no error): the not-seen branch, the id marked.
			res, err = s.Execute(context.Background(), env(&tracker{}))
			if err != nil {
				t.Fatal(err)
			}
			if hasAction(res, "discard") {
				t.Errorf("not seen, yet discarded: %v", res.Actions)
			}
			if len(res.DuplicateMarks) != 1 {
				t.Errorf("marks %v", res.DuplicateMarks)
			}

			// Seen: the seen branch.
			res, err = s.Execute(context.Background(), env(&tracker{seen: true}))
			if err != nil {
				t.Fatal(err)
			}
			if !hasAction(res, "discard") {
				t.Errorf("seen, yet not discarded: %v", res.Actions)
			}
		})
	}
}

func hasAction(res *Result, typ string) bool {
	for _, a := range res.Actions {
		if a.Type == typ {
			return true
		}
	}
	return false
}

// TestDuplicateTrackerFailureMultiscript: a tracker failure in the user
// script stops the sequence (no after script runs) and RunMulti reports
// ErrTemporary, so the delivery agent does not carry out the failure result.
func TestDuplicateTrackerFailureMultiscript(t *testing.T) {
	before := mustCompile(t, `require ["fileinto", "copy"]; fileinto :copy "Archive";`)
	user := mustCompile(t, `require "duplicate"; if duplicate { discard; stop; }`)
	after := mustCompile(t, `require "fileinto"; fileinto "After";`)
	env := &Env{Message: NewMessage([]byte(testMsg)), Duplicates: &tracker{err: errors.New("timeout")}}
	res, err := RunMulti(context.Background(), env, []*Script{before}, user, []*Script{after})
	if !errors.Is(err, ErrTemporary) {
		t.Fatalf("error %v, want ErrTemporary", err)
	}
	for _, a := range res.Actions {
		if a.Mailbox == "After" {
			t.Errorf("the after script ran: %v", res.Actions)
		}
	}
}
