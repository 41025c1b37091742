package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/dovetail-mail/dovetail/spam/bayes"
)

// TestQuarantineLearnLeavesOutOwnAuthenticationResults: a quarantined message
// carries the Authentication-Results our milter wrote; `quarantine learn` and
// `release --learn-ham` must leave it out of Bayes as `dovetail learn` does,
// or the filter learns its own verdicts from the quarantine.
func TestQuarantineLearnLeavesOutOwnAuthenticationResults(t *testing.T) {
	ctx := context.Background()
	_, cfg := configInDataDir(t, "store:\n  backend: memory\nmilter:\n  authserv_id: mx.test\n")
	app := loadApp(t, cfg)
	defer app.Close()
	learn, err := spamLearner(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: a@example.net\nMessage-ID: <1@example.net>\nAuthentication-Results: mx.test; spf=fail smtp.mailfrom=example.net\nSubject: hi\n\nbody\n"
	if err := learn(ctx, []byte(msg), true, ""); err != nil {
		t.Fatal(err)
	}
	st, err := app.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := bayes.New(st, bayes.DefaultParams())
	if err := c.Learn(ctx, "global", "other", []string{"w:other"}, false); err != nil { // Classify needs ham too
		t.Fatal(err)
	}
	if s, _, _ := c.Counts(ctx, "global"); s != 1 {
		t.Fatalf("%d spam learned, want 1", s)
	}
	res, err := c.Classify(ctx, "global", []string{"hn:authentication-results"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Clues) > 0 {
		t.Errorf("our own Authentication-Results was learned: %+v", res.Clues)
	}
}

// TestQuarantineLearnTrainsTheRecipientsTable: with per-user Bayes the
// milter classifies a message with its recipient's table, keyed by the
// address; `quarantine learn` must train that one, not one named by the
// lmtpd login, which nothing ever reads.
func TestQuarantineLearnTrainsTheRecipientsTable(t *testing.T) {
	ctx := context.Background()
	dir, cfg := configInDataDir(t, "spam:\n  bayes:\n    per_user: true\n")
	id := quarantineOne(t, dir, &quarantine.Entry{Recipient: "Alice@Example.COM", User: "alice", Sender: "s@example.net", Score: 9},
		"From: s@example.net\nMessage-ID: <q1@example.net>\nSubject: cheap pills\n\nbuy now\n")
	var out, errb bytes.Buffer
	if code := Main([]string{"-c", cfg, "quarantine", "learn", "--spam", id}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("learn: exit %d %q %q", code, out.String(), errb.String())
	}
	app := loadApp(t, cfg)
	defer app.Close()
	st, err := app.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := bayes.New(st, bayes.DefaultParams())
	for table, want := range map[string]int64{"global": 1, "user:alice@example.com": 1, "user:alice": 0} {
		if s, _, err := c.Counts(ctx, table); err != nil || s != want {
			t.Errorf("table %s: %d spam learned (%v), want %d", table, s, err, want)
		}
	}
}

// TestQuarantineAdminNeedsExistingQuarantine: without the right -c the admin
// commands read the embedded default's data dir; they must say that no
// quarantine is there, naming the directory, instead of creating an empty one
// (as root: a root-owned directory lmtpd then cannot open) and listing nothing.
func TestQuarantineAdminNeedsExistingQuarantine(t *testing.T) {
	dir, cfg := configInDataDir(t, "")
	qdir := filepath.Join(dir, "quarantine")
	for _, args := range [][]string{{"list"}, {"list", "--json"}, {"purge", "--older-than", "30d"}, {"delete", "260101-aaaaaaaaaa"}} {
		var out, errb bytes.Buffer
		code := Main(append([]string{"-c", cfg, "quarantine"}, args...), strings.NewReader(""), &out, &errb)
		if code != qExitError || !strings.Contains(errb.String(), qdir) {
			t.Errorf("%v: exit %d, want %d with the directory named\nstdout: %q\nstderr: %q", args, code, qExitError, out.String(), errb.String())
		}
		if _, err := os.Stat(qdir); err == nil {
			t.Fatalf("%v created %s", args, qdir)
		}
	}
	// Once lmtpd has opened it, the same commands work on the empty quarantine.
	q, err := quarantine.Open(quarantine.Config{Dir: qdir})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	var out, errb bytes.Buffer
	if code := Main([]string{"-c", cfg, "quarantine", "list", "--json"}, strings.NewReader(""), &out, &errb); code != 0 || strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("list of an empty quarantine: exit %d %q %q", code, out.String(), errb.String())
	}
}

// TestLearnUsageExitCode: `dovetail learn` refuses bad usage with exit 2, as
// it does for a missing --spam/--ham/--forget, not 1 (the exit of a run that
// could not read a file).
func TestLearnUsageExitCode(t *testing.T) {
	for _, args := range [][]string{{"learn", "--spam"}, {"learn", "--nope", "x"}} {
		if code, out, errOut := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s%s", args, code, out, errOut)
		}
	}
}

// TestOwnAuthservIDsFollowPostfix: without milter.authserv_id the milter
// writes Authentication-Results under Postfix's $myhostname (its j macro),
// often a full name where the host name is short; learning must leave those
// out too, so the authserv-ids learning skips include postconf's answer.
func TestOwnAuthservIDsFollowPostfix(t *testing.T) {
	testenv.Need(t, "postconf")
	pf := t.TempDir()
	os.WriteFile(filepath.Join(pf, "main.cf"), []byte("myhostname = mx.learn.example\n"), 0o644)
	t.Setenv("MAIL_CONFIG", pf)
	for _, tc := range []struct {
		cfg  string
		want []string
	}{
		{"", []string{"mx.learn.example"}},
		{"milter:\n  authserv_id: mx.configured.example\n", []string{"mx.configured.example"}},
	} {
		_, cfg := configInDataDir(t, tc.cfg)
		app := loadApp(t, cfg)
		got := ownAuthservIDs(t.Context(), app)
		app.Close()
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("config %q: authserv-ids %q lack %q", tc.cfg, got, w)
			}
		}
		if tc.cfg != "" && len(got) != 1 {
			t.Errorf("configured authserv_id: %q, want only it", got)
		}
	}
}

// TestOwnAuthservIDsExpandPostfixParameters: main.cf commonly names the host
// after $mydomain; the milter's j macro is the expanded value, so the id
// learning leaves out must be too ("mx.$mydomain" matches no header, and the
// milter's own verdicts were learned as evidence).
func TestOwnAuthservIDsExpandPostfixParameters(t *testing.T) {
	testenv.Need(t, "postconf")
	pf := t.TempDir()
	os.WriteFile(filepath.Join(pf, "main.cf"), []byte("mydomain = learn.example\nmyhostname = mx.$mydomain\n"), 0o644)
	t.Setenv("MAIL_CONFIG", pf)
	if got := postfixMyhostname(t.Context()); got != "mx.learn.example" {
		t.Errorf("postfixMyhostname = %q, want mx.learn.example ($mydomain expanded, as in the milter's j macro)", got)
	}
}
