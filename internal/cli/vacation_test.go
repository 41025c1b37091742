package cli

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/lmtpd"
	"github.com/dovetail-mail/dovetail/sieve"
)

// lmtpd.vacation's bounds reach the Sieve interpreter, which clamps first:
// with Pigeonhole's defaults (1-60 days) max_period: 90d had no effect.
func TestVacationSettingsReachSieve(t *testing.T) {
	period := func(cfg lmtpd.Config, days int) time.Duration {
		t.Helper()
		s, err := sieve.Compile("v", []byte(`require "vacation"; vacation :days `+strconv.Itoa(days)+` "away";`), nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Execute(context.Background(), &sieve.Env{
			Message:  sieve.NewMessage([]byte("From: a@example.org\r\nSubject: hi\r\n\r\nx\r\n")),
			Envelope: sieve.Envelope{From: "a@example.org", To: "b@example.com"},
			Config:   vacationSettings(cfg),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range res.Actions {
			if a.Type == "vacation" {
				return time.Duration(a.Seconds) * time.Second
			}
		}
		t.Fatalf("no vacation action: %+v", res.Actions)
		return 0
	}
	cfg := lmtpd.DefaultConfig()
	if got := period(cfg, 80); got != 80*24*time.Hour {
		t.Errorf("default max 90d, :days 80 → %v", got)
	}
	cfg.Vacation.MaxPeriod = config.Duration(10 * 24 * time.Hour)
	if got := period(cfg, 80); got != 10*24*time.Hour {
		t.Errorf("max 10d, :days 80 → %v", got)
	}
	cfg.Sieve.Settings = map[string]string{"sieve_vacation_max_period": "20d"}
	if got := period(cfg, 80); got != 20*24*time.Hour {
		t.Errorf("explicit sieve setting 20d, :days 80 → %v", got)
	}
}
