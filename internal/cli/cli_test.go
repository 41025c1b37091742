package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func repoRoot(t *testing.T) string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..")
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

func TestConfigCheckExample(t *testing.T) {
	code, out, errOut := run(t, "config", "check", filepath.Join(repoRoot(t), "dovetail.example.yaml"))
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(out, "OK") {
		t.Errorf("stdout = %q", out)
	}
}

func TestConfigCheckEmbeddedDefault(t *testing.T) {
	t.Setenv("DOVETAIL_CONFIG", "")
	if code, out, errOut := run(t, "config", "check"); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
}

func TestConfigCheckBroken(t *testing.T) {
	path := filepath.Join(repoRoot(t), "testdata", "config", "broken.yaml")
	code, _, errOut := run(t, "config", "check", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, errOut)
	}
	// One problem of each kind; the semantic ones of the sections that
	// decoded are reported beside the unknown key and the type errors.
	want := []string{
		"broken.yaml:2: data_dir: must not be empty",
		"broken.yaml:3: daemons[1]: unknown daemon \"smtpd\"",
		"broken.yaml:5: log.level: unknown level \"loud\"",
		"broken.yaml:6: log.fromat: unknown key (hint: did you mean \"format\"?)",
		"broken.yaml:8: metrics.listen: expected a string value, got a list",
		"broken.yaml:9: shutdown_grace: invalid duration \"soon\"",
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("missing %q in:\n%s", w, errOut)
		}
	}
}

func TestConfigCheckBrokenSemantics(t *testing.T) {
	// Structure is fine, values are not: every semantic problem is reported, with lines.
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("data_dir: \"\"\ndaemons: [authd, smtpd]\nlog:\n  level: loud\nruntime:\n  gc_percent: 0\n"), 0o600)
	code, _, errOut := run(t, "config", "check", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, w := range []string{
		"c.yaml:1: data_dir: must not be empty",
		"c.yaml:2: daemons[1]: unknown daemon \"smtpd\"",
		"c.yaml:4: log.level: unknown level \"loud\"",
		"c.yaml:6: runtime.gc_percent: 0 is not a GC target",
	} {
		if !strings.Contains(errOut, w) {
			t.Errorf("missing %q in:\n%s", w, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "dovetail ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

// A mistyped subcommand of a command group (`config chek`, `sieve chek`) must
// fail: exiting 0 with the group's help would let `dovetail config chek FILE
// && systemctl reload dovetail` go ahead without any check. The group alone
// still prints its help and exits 0.
func TestUnknownSubcommandFails(t *testing.T) {
	t.Setenv("DOVETAIL_CONFIG", "")
	for _, args := range [][]string{
		{"config", "chek", "dovetail.yaml"},
		{"sieve", "chek", "x.sieve"},
		{"quarantine", "lst"},
	} {
		code, _, errOut := run(t, args...)
		if code == 0 || !strings.Contains(errOut, `unknown command "`+args[1]+`"`) {
			t.Errorf("%v: exit %d, stderr %q; want a non-zero exit naming the unknown command", args, code, errOut)
		}
	}
	for _, group := range []string{"config", "sieve", "quarantine"} {
		if code, out, errOut := run(t, group); code != 0 || !strings.Contains(out, "Available Commands") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want its help", group, code, out, errOut)
		}
	}
}
