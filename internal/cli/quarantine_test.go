package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/lmtpd"
	"github.com/dovetail-mail/dovetail/quarantine"
)

// configInDataDir writes a config file with data_dir: the new data dir (which
// holds testUsers) followed by extra, and returns the dir and the file.
func configInDataDir(t *testing.T, extra string) (dir, cfg string) {
	t.Helper()
	dir = usersDataDir(t)
	cfg = filepath.Join(dir, "dovetail.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+dir+"\n"+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// loadApp is the App of the config file cfg, loaded; the caller closes it.
func loadApp(t *testing.T, cfg string) *App {
	t.Helper()
	app := &App{ConfigPath: cfg, Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}
	if err := app.load(); err != nil {
		app.Close()
		t.Fatal(err)
	}
	return app
}

// quarantineOne adds msg to the quarantine in <dir>/quarantine, as lmtpd
// would, and returns its id.
func quarantineOne(t *testing.T, dir string, e *quarantine.Entry, msg string) string {
	t.Helper()
	q, err := quarantine.Open(quarantine.Config{Dir: filepath.Join(dir, "quarantine")})
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Add(context.Background(), e, []byte(msg))
	q.Close()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestQuarantineCLI(t *testing.T) {
	dir, cfg := configInDataDir(t, "")
	id := quarantineOne(t, dir, &quarantine.Entry{Recipient: "alice@example.com", User: "alice",
		Sender: "spammer@example.net", Subject: "win \x1b[31mbig", Score: 11.5}, "Subject: win big\nX-Spam-Flag: YES\nX-Evil: \x1b]0;pwned\x07\xc2\x9b\xff\n\nbody\n")
	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := Main(append([]string{"-c", cfg, "quarantine"}, args...), strings.NewReader(""), &out, &errb)
		return out.String() + errb.String(), code
	}
	out, code := run("list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "11.5") || strings.Contains(out, "\x1b") {
		t.Fatalf("list: %d\n%q", code, out)
	}
	out, code = run("list", "--json", "--min-score", "20")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("list --min-score 20: %d %q", code, out)
	}
	out, code = run("list", "--json", "--user", "alice")
	var ents []quarantine.Entry
	if code != 0 || json.Unmarshal([]byte(out), &ents) != nil || len(ents) != 1 {
		t.Errorf("list --json --user: %d %q", code, out)
	}
	if out, code = run("show", id, "--headers"); code != 0 || out != "Subject: win big\nX-Spam-Flag: YES\nX-Evil: ?]0;pwned??\ufffd\n" {
		t.Errorf("show --headers: %d %q", code, out)
	}
	if out, code = run("show", id); code != 0 || strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, "Score:     11.50") {
		t.Errorf("show: %d %q", code, out)
	}
	if out, code = run("show", id, "--raw"); code != 0 || !strings.HasSuffix(out, "\nbody\n") || !strings.Contains(out, "\x1b]0;pwned") {
		t.Errorf("show --raw: %d %q", code, out)
	}
	// --json is byte-exact too: the message's \xff and C1 bytes are not UTF-8,
	// so it comes base64-encoded rather than with U+FFFD in their place.
	hdr := "Subject: win big\nX-Spam-Flag: YES\nX-Evil: \x1b]0;pwned\x07\xc2\x9b\xff\n"
	for _, c := range []struct{ flag, field, want string }{{"--raw", "raw", hdr + "\nbody\n"}, {"--headers", "headers", hdr}} {
		out, code = run("show", id, "--json", c.flag)
		var shown map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &shown) != nil {
			t.Fatalf("show --json %s: %d %q", c.flag, code, out)
		}
		b64, _ := shown[c.field+"_base64"].(string)
		got, err := base64.StdEncoding.DecodeString(b64)
		if _, lossy := shown[c.field]; lossy || err != nil || string(got) != c.want {
			t.Errorf("show --json %s not byte-exact: %q", c.flag, out)
		}
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"show", "no-such-id-here"}, 3},
		{[]string{"show", id, "--raw", "--headers"}, 2},
		{[]string{"purge"}, 2},
		{[]string{"purge", "--older-than", "soon"}, 2},
		{[]string{"learn", id}, 2},
		{[]string{"list", "--since", "yesterday"}, 2},
		{[]string{"delete", id, "no-such-id-here"}, 3},
		{[]string{"delete", id}, 3},
		{[]string{"purge", "--older-than", "30d", "--json"}, 0},
		// Whatever cobra itself refuses is a usage error too, never 0 or 1.
		{[]string{"release"}, 2},
		{[]string{"show"}, 2},
		{[]string{"list", "extra"}, 2},
		{[]string{"list", "--nope"}, 2},
		{[]string{"list", "--min-score", "high"}, 2},
		{[]string{"lst"}, 2},
		{[]string{"release", "--learn-ham", "--json", "no-such-id-here"}, 3},
	} {
		if out, code := run(c.args...); code != c.code {
			t.Errorf("%v: exit %d, want %d\n%s", c.args, code, c.code, out)
		}
	}
}

// oneUser is a directory with alice only.
type oneUser struct{ u *directory.User }

func (d oneUser) LookupLogin(_ context.Context, login string) (*directory.User, error) {
	if login == d.u.Login {
		return d.u, nil
	}
	return nil, directory.ErrNotFound
}

func (d oneUser) LookupAddress(_ context.Context, addr string) (*directory.User, error) {
	if addr == "alice@example.com" {
		return d.u, nil
	}
	return nil, directory.ErrNotFound
}

// TestReleaseRaces: releases of one ID running at once (from separate processes,
// each with its own index connection) deliver it exactly once, and the others
// say it is gone; a release racing a delete either delivers or deletes, never
// delivers what was deleted; a failed delivery leaves it quarantined.
func TestReleaseRaces(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	home := filepath.Join(dir, "alice")
	cfg := lmtpd.DefaultConfig()
	cfg.Hostname = "mx.test"
	cfg.Fsync = false
	d := lmtpd.NewDeliverer(lmtpd.Options{Config: cfg, Directory: oneUser{&directory.User{Login: "alice", Home: home, Enabled: true}}})
	open := func() *quarantine.Store {
		q, err := quarantine.Open(quarantine.Config{Dir: filepath.Join(dir, "quarantine")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	stores := make([]*quarantine.Store, 8)
	for i := range stores {
		stores[i] = open()
	}
	inbox := func() int {
		ents, _ := os.ReadDir(filepath.Join(home, "Maildir", "new"))
		return len(ents)
	}
	add := func(rcpt string) string {
		id, err := stores[0].Add(ctx, &quarantine.Entry{Recipient: rcpt, User: "alice", Sender: "s@example.net"}, []byte("Subject: x\n\nbody\n"))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	for round := 0; round < 5; round++ {
		id := add("alice@example.com")
		before := inbox()
		results := make([]idResult, len(stores))
		codes := make([]int, len(stores))
		var wg sync.WaitGroup
		for i, q := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], codes[i] = releaseOne(ctx, d, q, id, nil)
			}()
		}
		wg.Wait()
		ok := 0
		for i, r := range results {
			switch {
			case r.OK:
				ok++
			case codes[i] != qExitNotFound || !strings.Contains(r.Result, "already released or deleted"):
				t.Errorf("loser %d: exit %d %q", i, codes[i], r.Result)
			}
		}
		if ok != 1 || inbox()-before != 1 {
			t.Fatalf("round %d: %d releases succeeded, %d copies delivered; want 1 and 1: %+v", round, ok, inbox()-before, results)
		}
	}

	for round := 0; round < 10; round++ {
		id := add("alice@example.com")
		before := inbox()
		var rel idResult
		var derr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); rel, _ = releaseOne(ctx, d, stores[1], id, nil) }()
		go func() { defer wg.Done(); derr = stores[2].Delete(ctx, id) }()
		wg.Wait()
		delivered := inbox() - before
		if rel.OK == (derr == nil) || delivered != map[bool]int{true: 1, false: 0}[rel.OK] {
			t.Fatalf("round %d: release %+v, delete %v, %d delivered", round, rel, derr, delivered)
		}
	}

	// A delivery that fails leaves the message quarantined and releasable.
	id := add("nobody@example.com")
	if r, code := releaseOne(ctx, d, stores[3], id, nil); r.OK || code == qExitOK {
		t.Fatalf("release to an unknown user: %+v", r)
	}
	if _, err := stores[4].Claim(ctx, id); err != nil {
		t.Errorf("after a failed release the message is not releasable: %v", err)
	}
}
