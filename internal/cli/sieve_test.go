package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const sieveTestMsg = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\nX-Spam-Score: 7\r\n\r\nbody\r\n"

func TestSieveCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.sieve", `require "fileinto"; if header :contains "subject" "x" { fileinto "X"; }`)
	// two validation errors; a syntax error in another file
	bad := writeFile(t, dir, "bad.sieve", "require \"nonsense\";\nfrobnicate;\nif true { keep; }\n")
	syntax := writeFile(t, dir, "syntax.sieve", "if true {\n  keep\n}\n")
	if code, out, errOut := run(t, "sieve", "check", good); code != 0 {
		t.Fatalf("good: exit %d %q %q", code, out, errOut)
	}
	code, out, _ := run(t, "sieve", "check", good, bad, syntax)
	if code != 1 {
		t.Fatalf("bad: exit %d, want 1", code)
	}
	for _, w := range []string{bad + ":1:9: ", bad + ":2:1: ", syntax + ":3:1: expected end of command"} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in %q", w, out)
		}
	}
}

func TestSieveTestJSON(t *testing.T) {
	dir := t.TempDir()
	msg := writeFile(t, dir, "m.eml", sieveTestMsg)
	s := writeFile(t, dir, "s.sieve", `require ["fileinto","imap4flags","copy"];
addflag "\\Seen";
fileinto :copy "Archive";
if header :is "subject" "hello" { redirect "c@example.com"; }`)
	code, out, errOut := run(t, "sieve", "test", "--json", s, msg)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var res struct {
		Actions []map[string]any `json:"actions"`
		Errors  []string         `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.Actions) != 2 {
		t.Fatalf("actions = %v", res.Actions)
	}
	if res.Actions[0]["type"] != "fileinto" || res.Actions[0]["mailbox"] != "Archive" || res.Actions[0]["copy"] != true {
		t.Errorf("action 0 = %v", res.Actions[0])
	}
	if res.Actions[1]["type"] != "redirect" || res.Actions[1]["address"] != "c@example.com" {
		t.Errorf("action 1 = %v", res.Actions[1])
	}
	// one schema: every key on every action
	for i, a := range res.Actions {
		for _, k := range []string{"type", "mailbox", "flags", "copy", "create", "address", "reason", "subject", "implicit"} {
			if _, ok := a[k]; !ok {
				t.Errorf("action %d lacks %q: %v", i, k, a)
			}
		}
	}
	// redirect cancels the implicit keep: no keep action
	code, out, _ = run(t, "sieve", "test", "--json", writeFile(t, dir, "k.sieve", `require "imap4flags"; addflag "\\Seen";`), msg)
	if code != 0 || !strings.Contains(out, `"implicit": true`) || !strings.Contains(out, `\\Seen`) {
		t.Errorf("implicit keep with flags: exit %d %s", code, out)
	}
}

func TestSieveTestExitCodes(t *testing.T) {
	dir := t.TempDir()
	msg := writeFile(t, dir, "m.eml", sieveTestMsg)
	bad := writeFile(t, dir, "bad.sieve", "frob;")
	if code, _, _ := run(t, "sieve", "test", bad, msg); code != 2 {
		t.Errorf("compile error: exit %d, want 2", code)
	}
	rt := writeFile(t, dir, "rt.sieve", "require \"reject\";\nreject \"no\";\nreject \"twice\";\n")
	code, out, _ := run(t, "sieve", "test", "--json", rt, msg)
	if code != 1 {
		t.Errorf("runtime error: exit %d, want 1", code)
	}
	if !strings.Contains(out, `"implicit": true`) {
		t.Errorf("runtime error must still print the implicit keep: %s", out)
	}
	before := writeFile(t, dir, "before.sieve", `require "fileinto"; fileinto "Before";`)
	user := writeFile(t, dir, "user.sieve", `require "fileinto"; fileinto "User";`)
	code, out, _ = run(t, "sieve", "test", "--before", before, user, msg)
	if code != 0 || !strings.Contains(out, `"Before"`) || strings.Contains(out, `"User"`) {
		t.Errorf("multiscript: exit %d %s", code, out)
	}
}
