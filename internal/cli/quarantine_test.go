package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/quarantine"
)

func TestQuarantineCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dovetail.yaml")
	os.WriteFile(cfg, []byte("data_dir: "+dir+"\n"), 0o600)
	q, err := quarantine.Open(quarantine.Config{Dir: filepath.Join(dir, "quarantine")})
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Add(context.Background(), &quarantine.Entry{Recipient: "alice@example.com", User: "alice",
		Sender: "spammer@example.net", Subject: "win \x1b[31mbig", Score: 11.5}, []byte("Subject: win big\nX-Spam-Flag: YES\nX-Evil: \x1b]0;pwned\x07\xc2\x9b\xff\n\nbody\n"))
	q.Close()
	if err != nil {
		t.Fatal(err)
	}
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
