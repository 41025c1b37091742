package cli

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

func waitFor(t *testing.T, what string, logs *testenv.LogBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeLifecycle runs the real binary: every daemon listens, /healthz answers,
// a broken config on SIGHUP is refused and the old one kept, a good one is taken,
// and SIGTERM stops it cleanly.
func TestServeLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dovetail")
	build := exec.Command("go", "build", "-o", bin, "github.com/dovetail-mail/dovetail/cmd/dovetail")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	metrics := testenv.FreeAddr(t)
	addrs := map[string]string{"authd": testenv.FreeAddr(t), "policyd": testenv.FreeAddr(t), "milter": testenv.FreeAddr(t), "lmtpd": testenv.FreeAddr(t)}
	cfgText := fmt.Sprintf(`data_dir: %s
metrics:
  listen: %s
shutdown_grace: 2s
authd:
  listen:
    address: %s
policyd:
  listen:
    address: %s
milter:
  listen:
    address: %s
lmtpd:
  listen:
    address: %s
`, filepath.Join(dir, "data"), metrics, addrs["authd"], addrs["policyd"], addrs["milter"], addrs["lmtpd"])
	writeUsers(t, filepath.Join(dir, "data"))
	cfgPath := filepath.Join(dir, "dovetail.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "config", "check", cfgPath); code != 0 {
		t.Fatalf("config check: %s", errOut)
	}

	logs := &testenv.LogBuffer{}
	cmd := exec.Command(bin, "serve", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "GOGC=", "GOMEMLIMIT=") // the config's collector settings apply
	cmd.Stderr = logs
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	waitFor(t, "healthz", logs, func() bool {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// Info lines linger up to daemon.LogLinger before they are written.
	waitFor(t, "the start line with the collector settings of the config", logs, func() bool {
		return strings.Contains(logs.String(), "gc_percent=400 memory_limit=0")
	})
	for name, a := range addrs {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Errorf("%s not listening on %s: %v", name, a, err)
			continue
		}
		c.Close()
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(body.String(), "go_goroutines") {
		t.Errorf("/metrics lacks runtime metrics")
	}

	// A broken config on SIGHUP: refused, the daemon keeps serving.
	os.WriteFile(cfgPath, []byte(cfgText+"bogus_key: 1\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload refusal", logs, func() bool {
		return strings.Contains(logs.String(), "reload failed, keeping the running configuration")
	})
	if !strings.Contains(logs.String(), "bogus_key: unknown key") {
		t.Errorf("reload error does not name the problem:\n%s", logs.String())
	}
	if c, err := net.Dial("tcp", addrs["policyd"]); err != nil {
		t.Errorf("policyd stopped after a refused reload: %v", err)
	} else {
		c.Close()
	}
	// A good config on SIGHUP is taken.
	os.WriteFile(cfgPath, []byte(cfgText), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload", logs, func() bool { return strings.Contains(logs.String(), "msg=reloaded") })

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit after SIGTERM:\n%s", logs.String())
	}
	for name, a := range addrs {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still listening after exit", name)
		}
	}
}
