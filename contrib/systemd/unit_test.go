// Package systemd holds dovetail's systemd unit; this test checks it with
// systemd's own parser.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// TestUnitVerifies: `systemd-analyze verify` accepts dovetail.service without
// a single warning (an unknown or misspelt key is only a warning to systemd,
// silently dropping a hardening line). The binary path is pointed at one that
// exists here; verify checks every Exec*= command.
func TestUnitVerifies(t *testing.T) {
	testenv.Need(t, "systemd-analyze")
	unit, err := os.ReadFile("dovetail.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "Type=notify\n") {
		t.Fatal("the unit must be Type=notify: dovetail reports READY=1 once it listens")
	}
	path := filepath.Join(t.TempDir(), "dovetail.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/dovetail", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
