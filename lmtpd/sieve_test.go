package lmtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/lmtpd/maildir"
)

func TestSieveFilterCacheAndErrors(t *testing.T) {
	home := t.TempDir()
	global := filepath.Join(t.TempDir(), "before.sieve")
	os.WriteFile(global, []byte(`require ["fileinto"]; if header :is "X-Spam-Flag" "YES" { fileinto "Junk"; stop; }`), 0o644)
	cfg := DefaultConfig().Sieve
	cfg.Before = []string{global}
	f := NewSieveFilter(cfg, "+", nil, nil)
	user := &directory.User{Login: "alice", Home: home}
	run := func(msg string) *Verdict {
		t.Helper()
		v, err := f.Filter(context.Background(), &FilterInput{User: user, Home: home, From: "a@b", To: "alice@example.com", Message: []byte(msg), Now: time.Now()})
		if err != nil {
			t.Fatalf("filter: %v", err)
		}
		return v
	}
	if v := run("X-Spam-Flag: YES\n\nx\n"); len(v.Actions) != 1 || v.Actions[0].Type != ActFileinto || v.Actions[0].Mailbox != "Junk" {
		t.Fatalf("global script: %+v", v.Actions)
	}
	// Personal script via the Pigeonhole layout: ~/.dovecot.sieve → sieve/main.sieve.
	os.MkdirAll(filepath.Join(home, "sieve"), 0o755)
	main := filepath.Join(home, "sieve", "main.sieve")
	os.WriteFile(main, []byte(`require ["fileinto"]; fileinto "Personal";`), 0o644)
	os.Symlink("sieve/main.sieve", filepath.Join(home, ".dovecot.sieve"))
	if v := run("Subject: hi\n\nx\n"); len(v.Actions) != 1 || v.Actions[0].Mailbox != "Personal" {
		t.Fatalf("personal script: %+v", v.Actions)
	}
	// Editing the file invalidates the cache (size changes).
	os.WriteFile(main, []byte(`require ["fileinto"]; fileinto "Changed!";`), 0o644)
	if v := run("Subject: hi\n\nx\n"); v.Actions[0].Mailbox != "Changed!" {
		t.Fatalf("cache not invalidated: %+v", v.Actions)
	}
	// A compile error is returned (the caller keeps the message in INBOX).
	os.WriteFile(main, []byte(`fileinto "x"`), 0o644)
	if _, err := f.Filter(context.Background(), &FilterInput{User: user, Home: home, Message: []byte("\nx"), Now: time.Now()}); err == nil {
		t.Fatal("compile error not reported")
	}
}

// TestSieveSpamtest: spamtest reads the milter's X-Spam-Score (0..15 → 1..10).
func TestSieveSpamtest(t *testing.T) {
	global := filepath.Join(t.TempDir(), "spam.sieve")
	os.WriteFile(global, []byte(`require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { fileinto "Junk"; }`), 0o644)
	cfg := DefaultConfig().Sieve
	cfg.Before = []string{global}
	f := NewSieveFilter(cfg, "+", nil, nil)
	user := &directory.User{Login: "alice", Home: t.TempDir()}
	for score, want := range map[string]string{"12.5": "Junk", "1.0": "", "6.0": ""} {
		v, err := f.Filter(context.Background(), &FilterInput{User: user, Home: user.Home, Message: []byte("X-Spam-Score: " + score + "\n\nx\n"), Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, a := range v.Actions {
			if a.Type == ActFileinto {
				got = a.Mailbox
			}
		}
		if got != want {
			t.Errorf("score %s: fileinto %q, want %q (%+v)", score, got, want, v.Actions)
		}
	}
}

// TestSieveCacheFollowsIncludesAndActiveLink: the compiled script is recompiled
// when an included script changes and when the active link is switched to another
// script of the same size (ManageSieve SETACTIVE), even within one mtime tick.
func TestSieveCacheFollowsIncludesAndActiveLink(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "sieve")
	os.MkdirAll(dir, 0o755)
	write := func(name, src string) { // as an editor saves: new file, renamed over
		p := filepath.Join(dir, name)
		os.WriteFile(p+".tmp", []byte(src), 0o644)
		stamp := time.Unix(1795422844, 0) // same mtime for every version
		os.Chtimes(p+".tmp", stamp, stamp)
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
	write("main.sieve", `require "include"; include :personal "rules";`)
	write("rules.sieve", `require "fileinto"; fileinto "AAAA";`)
	write("other.sieve", `require "fileinto"; fileinto "BBBB";`)
	active := filepath.Join(home, ".dovecot.sieve")
	os.Symlink("sieve/main.sieve", active)
	f := NewSieveFilter(DefaultConfig().Sieve, "+", nil, nil)
	user := &directory.User{Login: "alice", Home: home}
	box := func() string {
		t.Helper()
		v, err := f.Filter(context.Background(), &FilterInput{User: user, Home: home, Message: []byte("Subject: x\n\nx\n"), Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range v.Actions {
			if a.Type == ActFileinto {
				return a.Mailbox
			}
		}
		return ""
	}
	if got := box(); got != "AAAA" {
		t.Fatalf("first run: %q", got)
	}
	write("rules.sieve", `require "fileinto"; fileinto "CCCC";`)
	if got := box(); got != "CCCC" {
		t.Errorf("after the included script changed: %q, want CCCC", got)
	}
	tmp := active + ".new"
	os.Symlink("sieve/other.sieve", tmp)
	os.Rename(tmp, active)
	if got := box(); got != "BBBB" {
		t.Errorf("after SETACTIVE to another script: %q, want BBBB", got)
	}
}

// TestSieveSettingsFromConfig: sieve.settings in the config reach the scripts
// (here spamtest's scale: 6.0 of max 10 is 6 on the 1..10 scale, not 4).
func TestSieveSettingsFromConfig(t *testing.T) {
	global := filepath.Join(t.TempDir(), "spam.sieve")
	os.WriteFile(global, []byte(`require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { fileinto "Junk"; }`), 0o644)
	cfg := DefaultConfig().Sieve
	cfg.Before = []string{global}
	cfg.Settings = map[string]string{"sieve_spamtest_max_value": "10"}
	f := NewSieveFilter(cfg, "+", nil, nil)
	user := &directory.User{Login: "alice", Home: t.TempDir()}
	v, err := f.Filter(context.Background(), &FilterInput{User: user, Home: user.Home, Message: []byte("X-Spam-Score: 6.0\n\nx\n"), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Actions) == 0 || v.Actions[0].Mailbox != "Junk" {
		t.Errorf("score 6.0 with max 10: %+v, want fileinto Junk", v.Actions)
	}
}

// TestSieveIgnoredAndEmptyVerdicts: notify is noted as not carried out and the
// message is still kept; a filter that returns no action at all keeps the message.
func TestSieveIgnoredAndEmptyVerdicts(t *testing.T) {
	global := filepath.Join(t.TempDir(), "n.sieve")
	os.WriteFile(global, []byte(`require ["enotify"]; notify "mailto:boss@example.com";`), 0o644)
	var logb testenv.LogBuffer
	e := newEnv(t, func(o *Options) {
		o.Config.Sieve.Before = []string{global}
		o.Filter = NewSieveFilter(o.Config.Sieve, "+", nil, nil)
		o.Logger = slog.New(slog.NewTextHandler(&logb, nil))
	})
	if _, d := e.dial().send("s@example.net", []string{"alice@example.com"}, testMsg); !strings.HasPrefix(d[0], "250") {
		t.Fatalf("%q", d)
	}
	if n := len(files(t, filepath.Join(e.dir, "alice/Maildir/new"))); n != 1 || !strings.Contains(logb.String(), "not carried out: notify") {
		t.Errorf("INBOX %d, log:\n%s", n, logb.String())
	}
	empty := newEnv(t, func(o *Options) { o.Filter = emptyFilter{} })
	if _, d := empty.dial().send("s@example.net", []string{"alice@example.com"}, testMsg); !strings.HasPrefix(d[0], "250") {
		t.Fatalf("%q", d)
	}
	if n := len(files(t, filepath.Join(empty.dir, "alice/Maildir/new"))); n != 1 {
		t.Errorf("a verdict without actions lost the message (INBOX %d)", n)
	}
}

type emptyFilter struct{}

func (emptyFilter) Filter(context.Context, *FilterInput) (*Verdict, error) { return &Verdict{}, nil }

// A listener is required: an empty address passed `config check` and then
// stopped `serve` without a file:line.
func TestConfigListenRequired(t *testing.T) {
	c := DefaultConfig()
	c.Listen.Address = ""
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "listen.address") {
		t.Errorf("empty listen address accepted: %v", err)
	}
}

// Vacation periods past time.Duration's range saturate instead of wrapping
// (negative: the minimum period, a reply a day).
func TestSecondsDuration(t *testing.T) {
	for _, tc := range []struct {
		s    int64
		want time.Duration
	}{
		{0, 0}, {86400, 24 * time.Hour}, {-5, 0},
		{999999 * 86400, time.Duration(math.MaxInt64)},
		{math.MaxInt64, time.Duration(math.MaxInt64)},
	} {
		if got := secondsDuration(tc.s); got != tc.want {
			t.Errorf("secondsDuration(%d) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// TestSieveScriptReadErrorIsTemporary: a script or an included script that
// cannot be read for a reason that passes (EIO here; ESTALE, EMFILE under
// load) is a temporary failure, as Pigeonhole's SIEVE_ERROR_TEMP_FAILURE —
// not a compile error that is cached until someone edits the file (every
// message kept in INBOX without the user's rules) nor a run without the rules.
func TestSieveScriptReadErrorIsTemporary(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "sieve")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "main.sieve"), []byte(`require "include"; include :personal "rules";`), 0o644)
	os.WriteFile(filepath.Join(dir, "opt.sieve"), []byte(`require "include"; include :optional :personal "rules";`), 0o644)
	rules := filepath.Join(dir, "rules.sieve")
	os.WriteFile(rules, []byte(`require "fileinto"; fileinto "Lists";`), 0o644)
	active := filepath.Join(home, ".dovecot.sieve")
	user := &directory.User{Login: "alice", Home: home}

	failing := ""
	open := func(p string) (*os.File, error) {
		if p == failing {
			return nil, &os.PathError{Op: "open", Path: p, Err: syscall.EIO}
		}
		return os.Open(p)
	}

	for _, script := range []string{"main.sieve", "opt.sieve"} {
		os.Remove(active)
		os.Symlink("sieve/"+script, active)
		var f *SieveFilter
		run := func() (string, error) {
			v, err := f.Filter(context.Background(), &FilterInput{User: user, Home: home, Message: []byte("Subject: x\n\nx\n"), Now: time.Now()})
			if err != nil {
				return "", err
			}
			for _, a := range v.Actions {
				if a.Type == ActFileinto {
					return a.Mailbox, nil
				}
			}
			return "", nil
		}
		for _, p := range []string{rules, active} {
			f = NewSieveFilter(DefaultConfig().Sieve, "+", nil, nil) // nothing cached
			f.open = open
			failing = p
			var te *TempError
			if box, err := run(); !errors.As(err, &te) {
				t.Errorf("%s: reading %s fails with EIO: got (%q, %v), want a TempError", script, filepath.Base(p), box, err)
			}
			failing = ""
			if box, err := run(); err != nil || box != "Lists" {
				t.Errorf("%s: once %s reads again: got (%q, %v), want fileinto Lists", script, filepath.Base(p), box, err)
			}
		}
	}
}

// TestSieveUserScriptsThroughAsUser: the user's script and its :personal
// includes are looked at and opened inside FilterInput.AsUser (the user's
// credentials), on every delivery — the cache's freshness check too — while
// the global scripts and :global includes are read outside it (the daemon's).
// When AsUser cannot switch, the recipient is tempfailed: nothing is known
// about the user's script.
func TestSieveUserScriptsThroughAsUser(t *testing.T) {
	home, globals := t.TempDir(), t.TempDir()
	before := filepath.Join(globals, "before.sieve")
	os.WriteFile(before, []byte(`require "editheader"; addheader "X-Before" "1";`), 0o644)
	os.WriteFile(filepath.Join(globals, "common.sieve"), []byte(`require "editheader"; addheader "X-Common" "1";`), 0o644)
	os.MkdirAll(filepath.Join(home, "sieve"), 0o755)
	os.WriteFile(filepath.Join(home, "sieve", "rules.sieve"), []byte(`require "fileinto"; fileinto "Lists";`), 0o644)
	os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(`require "include"; include :global "common"; include :personal "rules";`), 0o644)
	cfg := DefaultConfig().Sieve
	cfg.Before = []string{before}
	f := NewSieveFilter(cfg, "+", nil, nil)

	var inUser bool
	opened := map[string]bool{} // path: opened as the user
	f.open = func(p string) (*os.File, error) {
		opened[filepath.Base(p)] = inUser
		return os.Open(p)
	}
	calls := 0
	var switchErr error
	asUser := func(fn func() error) error {
		calls++
		if switchErr != nil {
			return switchErr
		}
		inUser = true
		defer func() { inUser = false }()
		return fn()
	}
	run := func() (*Verdict, error) {
		return f.Filter(context.Background(), &FilterInput{User: &directory.User{Login: "alice", Home: home}, Home: home,
			Message: []byte("Subject: x\n\nx\n"), AsUser: asUser, Now: time.Now()})
	}
	v, err := run()
	if err != nil || len(v.Actions) != 1 || v.Actions[0].Mailbox != "Lists" {
		t.Fatalf("first run: %+v %v", v, err)
	}
	want := map[string]bool{"before.sieve": false, "common.sieve": false, ".dovecot.sieve": true, "rules.sieve": true}
	if len(opened) != len(want) {
		t.Errorf("opened %v, want %v", opened, want)
	}
	for name, user := range want {
		if got, ok := opened[name]; !ok || got != user {
			t.Errorf("%s opened as the user: %v (opened: %v), want %v", name, got, ok, user)
		}
	}
	calls = 0
	if v, err := run(); err != nil || len(v.Actions) != 1 || v.Actions[0].Mailbox != "Lists" {
		t.Fatalf("cached run: %+v %v", v, err)
	}
	if calls == 0 {
		t.Error("the cached user script was checked for changes as the daemon")
	}
	switchErr = fmt.Errorf("%w: setgroups: operation not permitted", maildir.ErrCredentials)
	var te *TempError
	if _, err := run(); !errors.As(err, &te) {
		t.Errorf("AsUser cannot switch: %v, want a TempError", err)
	}
}

// TestSieveScriptFIFODoesNotHang: a user's active script or :personal include
// that is a FIFO (mkfifo ~/.dovecot.sieve) is no script: the filter fails at
// once (implicit keep, as for any script that cannot be read) instead of
// waiting in open for a writer that never comes — which held every delivery
// to that user, and its thread, for ever, and Postfix's retries piled up
// threads until lmtpd died for all users.
func TestSieveScriptFIFODoesNotHang(t *testing.T) {
	for _, name := range []string{".dovecot.sieve", "sieve/rules.sieve"} {
		home := t.TempDir()
		os.MkdirAll(filepath.Join(home, "sieve"), 0o755)
		if name != ".dovecot.sieve" {
			os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(`require "include"; include :personal "rules";`), 0o644)
		}
		if err := syscall.Mkfifo(filepath.Join(home, name), 0o644); err != nil {
			t.Fatal(err)
		}
		f := NewSieveFilter(DefaultConfig().Sieve, "+", nil, nil)
		c := make(chan error, 1)
		go func() {
			_, err := f.Filter(context.Background(), &FilterInput{User: &directory.User{Login: "alice", Home: home},
				Home: home, Message: []byte("Subject: x\n\nx\n"), Now: time.Now()})
			c <- err
		}()
		select {
		case err := <-c:
			var te *TempError
			if err == nil || errors.As(err, &te) {
				t.Errorf("%s: %v, want a script error (implicit keep)", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the filter hangs on a FIFO", name)
		}
	}
}
