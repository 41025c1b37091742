package sieve

import (
	"context"
	"testing"
)

// spamValue returns the spamtest (or spamtest :percent) value for a message
// whose X-Spam-Score header holds score, with sieve_spamtest_max_value 10.
func spamValue(t *testing.T, score string, percent bool) string {
	t.Helper()
	pct := ""
	if percent {
		pct = ":percent "
	}
	s := mustCompile(t, `require ["spamtestplus","variables","fileinto"];
if spamtest `+pct+`:matches "*" { fileinto "${0}"; }
`)
	res, err := s.Execute(context.Background(), &Env{
		Message:  NewMessage([]byte("From: a@example.org\r\nX-Spam-Score: " + score + "\r\nSubject: x\r\n\r\nbody\r\n")),
		Envelope: Envelope{From: "a@example.org", To: "b@example.net"},
		Config: map[string]string{
			"sieve_spamtest_status_header": "X-Spam-Score",
			"sieve_spamtest_status_type":   "score",
			"sieve_spamtest_max_value":     "10",
		},
	})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	for _, a := range res.Actions {
		if a.Type == "fileinto" {
			return a.Mailbox
		}
	}
	t.Fatalf("no fileinto in %v", actSummary(res))
	return ""
}

// The score is read as Pigeonhole reads it: an optional sign, digits and a
// '.' or ',' radix point, nothing else. strconv.ParseFloat also took "NaN"
// (1+int(NaN*9) is a platform-dependent garbage value; on amd64 a negative
// number, which i;ascii-numeric orders above every spam level), "Inf",
// "0x1p3" and "1e3", and refused the "6,5" of a score written in a comma
// locale, so the message counted as not tested.
func TestSpamtestScoreSyntax(t *testing.T) {
	for _, c := range []struct {
		score   string
		percent bool
		want    string
	}{
		{"6.5", false, "6"},
		{"6.5", true, "65"},
		{"6,5", false, "6"},
		{"-3.2", false, "1"},
		{"+20", false, "10"},
		{"NaN", false, "0"},
		{"NaN", true, "0"},
		{"nan", false, "0"},
		{"Inf", false, "0"},
		{"-Inf", true, "0"},
		{"0x1p3", false, "0"},
		{"1e3", false, "0"},
		{"1_0", false, "0"},
		{"", false, "0"},
	} {
		if got := spamValue(t, c.score, c.percent); got != c.want {
			t.Errorf("X-Spam-Score %q (percent %v): spamtest value %q, want %q", c.score, c.percent, got, c.want)
		}
	}
}
