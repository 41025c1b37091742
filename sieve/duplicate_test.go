package sieve

import (
	"context"
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
