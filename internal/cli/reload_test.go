package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// served is `dovetail serve` (or one daemon) running in the test's process
// with the real builders.
type served struct {
	app     *App
	logs    *testenv.LogBuffer
	cfgPath string
	done    chan error
	cancel  context.CancelFunc
}

func serveInProcess(t *testing.T, cfg string, names ...string) *served {
	t.Helper()
	return serveWith(t, builders(), cfg, names...)
}

func serveWith(t *testing.T, bs map[string]builder, cfg string, names ...string) *served {
	t.Helper()
	s := &served{logs: &testenv.LogBuffer{}, cfgPath: filepath.Join(t.TempDir(), "dovetail.yaml"), done: make(chan error, 1)}
	s.write(t, cfg)
	s.app = &App{ConfigPath: s.cfgPath, Stdin: strings.NewReader(""), Stdout: s.logs, Stderr: s.logs, ready: make(chan struct{})}
	t.Cleanup(s.app.Close)
	if err := s.app.load(); err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() { s.done <- runBuilt(ctx, s.app, bs, names, len(names) > 1) }()
	t.Cleanup(s.stop)
	select {
	case <-s.app.ready:
	case err := <-s.done:
		t.Fatalf("serve exited: %v\n%s", err, s.logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not get ready:\n%s", s.logs.String())
	}
	return s
}

func (s *served) write(t *testing.T, cfg string) {
	t.Helper()
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *served) stop() {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
	}
}

// hup sends SIGHUP to the test process (serve catches it, as in production)
// and waits for the reload's outcome in the log.
func (s *served) hup(t *testing.T) (ok bool) {
	t.Helper()
	before := strings.Count(s.logs.String(), "msg=reloaded") + strings.Count(s.logs.String(), "msg=\"reload failed")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		l := s.logs.String()
		if strings.Count(l, "msg=reloaded")+strings.Count(l, "msg=\"reload failed") > before {
			return strings.LastIndex(l, "msg=reloaded") > strings.LastIndex(l, "msg=\"reload failed")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload outcome logged:\n%s", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *served) gauge(t *testing.T, name string) float64 {
	t.Helper()
	return testenv.Gauge(t, s.app.Registry, name)
}

// rcpts opens an LMTP session and returns the reply to each RCPT.
func rcpts(t *testing.T, addr string, to ...string) []error {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(nc)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@example.net", nil); err != nil {
		t.Fatal(err)
	}
	var out []error
	for _, r := range to {
		out = append(out, c.Rcpt(r, nil))
	}
	return out
}

func reloadConfig(dataDir, metrics, lmtp, policy, auth string, maxRcpt int, gc int, memLimit, level, geoip string) string {
	return fmt.Sprintf(`data_dir: %s
metrics:
  listen: %s
log:
  level: %s
runtime:
  gc_percent: %d
  memory_limit: %s
authd:
  listen: {address: %s}
policyd:
  listen: {address: %s}
  checks: [access]
  access:
    enabled: true
    geoip_database: %q
lmtpd:
  listen: {address: %s}
  max_recipients: %d
  sieve: {enabled: false}
`, dataDir, metrics, level, gc, memLimit, auth, policy, geoip, lmtp, maxRcpt)
}

// A reload is all or nothing: when one daemon cannot take the new config
// (here policyd: a GeoIP database that exists but does not parse, which
// `config check` cannot see), nothing changes — not the global config, the
// collector settings, the log level nor another daemon's settings — one error
// is logged and no "reloaded". A good reload then applies lmtpd's settings
// too (it had no reload hook: max_recipients stayed), lifts a memory limit
// set to 0, and names the settings that need a restart in one warning.
func TestReloadAllOrNothing(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) })

	data := usersDataDir(t)
	metrics, lmtp, policy, auth := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	badGeo := filepath.Join(t.TempDir(), "country.mmdb")
	os.WriteFile(badGeo, []byte("not an mmdb"), 0o600)

	s := serveInProcess(t, reloadConfig(data, metrics, lmtp, policy, auth, 1000, 300, "1GB", "info", ""), "authd", "policyd", "lmtpd")
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("memory limit at start = %d", got)
	}
	if errs := rcpts(t, lmtp, "alice@example.com", "bob@example.com"); errs[0] != nil || errs[1] != nil {
		t.Fatalf("RCPTs at start: %v", errs)
	}
	if code, body := httpGet(t, "http://"+metrics+"/readyz"); code != 200 || body != "directory: ok\nstore: ok\nready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}

	// Refused: policyd cannot build its checks.
	s.write(t, reloadConfig(data, metrics, lmtp, policy, auth, 1, 200, "0", "debug", badGeo))
	if s.hup(t) {
		t.Fatalf("reload with an unparsable GeoIP database was taken:\n%s", s.logs.String())
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "reload failed, keeping the running configuration") || !strings.Contains(logs, "geoip") {
		t.Errorf("the refusal does not name the problem:\n%s", logs)
	}
	if strings.Contains(logs, "msg=reloaded") {
		t.Errorf("a refused reload logged msg=reloaded:\n%s", logs)
	}
	if c := s.app.Config(); c.Runtime.GCPercent != 300 || c.Lmtpd.MaxRecipients != 1000 || c.Log.Level != "info" {
		t.Errorf("the config was swapped by a refused reload: %+v %d %s", c.Runtime, c.Lmtpd.MaxRecipients, c.Log.Level)
	}
	if p := debug.SetGCPercent(-1); p != 300 {
		t.Errorf("GC percent %d after a refused reload, want 300", p)
	} else {
		debug.SetGCPercent(p)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("memory limit %d after a refused reload, want 1 GiB", got)
	}
	if s.app.logs.level.Level().String() != "INFO" {
		t.Errorf("log level changed by a refused reload")
	}
	if errs := rcpts(t, lmtp, "alice@example.com", "bob@example.com"); errs[1] != nil {
		t.Errorf("lmtpd took max_recipients from a refused reload: %v", errs[1])
	}
	if v := s.gauge(t, "dovetail_config_last_reload_successful"); v != 0 {
		t.Errorf("dovetail_config_last_reload_successful = %v after a refused reload", v)
	}

	// Taken, with a listener change that needs a restart.
	newMetrics := testenv.FreeAddr(t)
	s.write(t, reloadConfig(data, newMetrics, lmtp, policy, auth, 1, 200, "0", "debug", ""))
	if !s.hup(t) {
		t.Fatalf("good reload refused:\n%s", s.logs.String())
	}
	errs := rcpts(t, lmtp, "alice@example.com", "bob@example.com")
	var se *smtp.SMTPError
	if errs[0] != nil || !errors.As(errs[1], &se) || se.Code != 452 {
		t.Errorf("after reloading max_recipients: 1, RCPTs = %v, want nil then 452", errs)
	}
	if p := debug.SetGCPercent(-1); p != 200 {
		t.Errorf("GC percent %d after reload, want 200", p)
	} else {
		debug.SetGCPercent(p)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit %d after reloading memory_limit: 0, want none", got)
	}
	if s.app.logs.level.Level().String() != "DEBUG" {
		t.Errorf("log level not reloaded")
	}
	if v := s.gauge(t, "dovetail_config_last_reload_successful"); v != 1 {
		t.Errorf("dovetail_config_last_reload_successful = %v after a good reload", v)
	}
	if !strings.Contains(s.logs.String(), "restart needed to apply: metrics.listen") {
		t.Errorf("no warning naming metrics.listen:\n%s", s.logs.String())
	}
	if got := s.app.Config().Metrics.Listen; got != metrics {
		t.Errorf("config after reload says metrics.listen %s; the process still serves on %s", got, metrics)
	}
}

// Log level and format apply to the loggers the daemons already hold.
func TestReloadLogFormat(t *testing.T) {
	b := &testenv.LogBuffer{}
	sw := newLogSwitch(b, LogConfig{Level: "info", Format: "text"}, daemon.LogLinger)
	l := sw.logger().With("daemon", "authd")
	l.Debug("hidden")
	l.Info("as text")
	sw.set(LogConfig{Level: "debug", Format: "json"})
	l.Debug("shown", "k", 1)
	sw.flush() // info and debug lines linger
	out := b.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, "msg=\"as text\" daemon=authd") && !strings.Contains(out, "msg=as") {
		t.Errorf("before: %q", out)
	}
	if !strings.Contains(out, `{"time":`) || !strings.Contains(out, `"msg":"shown","daemon":"authd","k":1`) {
		t.Errorf("after switching to json/debug: %q", out)
	}
}

func TestChangedSettings(t *testing.T) {
	a, b := DefaultConfig(), DefaultConfig()
	b.Lmtpd.Listen.Address = "unix:/run/lmtp"
	b.Store.Backend = "redis"
	b.Lmtpd.MaxRecipients = 5 // live
	var got []string
	for _, p := range append(restartOnly[""], restartOnly["lmtpd"]...) {
		got = append(got, changedSettings(a, b, p)...)
	}
	if strings.Join(got, ", ") != "store.backend, lmtpd.listen.address" {
		t.Errorf("changed = %v", got)
	}
	eff := keepSettings(b, a, restartOnly["lmtpd"])
	if eff.Lmtpd.Listen != a.Lmtpd.Listen || eff.Lmtpd.MaxRecipients != 5 || eff.Store.Backend != "redis" {
		t.Errorf("kept: %+v %d %s", eff.Lmtpd.Listen, eff.Lmtpd.MaxRecipients, eff.Store.Backend)
	}
}

// idleService accepts and closes connections.
type idleService struct {
	mu sync.Mutex
	ln net.Listener
}

func (s *idleService) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}

func (s *idleService) Shutdown(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
	return nil
}

// A SIGHUP while the daemons are still being built (systemctl reload right
// after start) must not kill the process; it is applied once they listen.
func TestSIGHUPDuringStartup(t *testing.T) {
	addr := testenv.FreeAddr(t)
	slow := func(context.Context, *App) (*unit, error) {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond) // still starting when it arrives
		return &unit{Unit: daemon.Unit{Name: "slow", Listener: config.Listener{Address: addr}, Service: &idleService{}}}, nil
	}
	s := serveWith(t, map[string]builder{"slow": slow}, fmt.Sprintf("data_dir: %s\nmetrics: {listen: \"\"}\n", usersDataDir(t)), "slow")
	waitFor(t, "the held reload", s.logs, func() bool { return strings.Contains(s.logs.String(), "msg=reloaded") })
	if c, err := net.Dial("tcp", addr); err != nil {
		t.Errorf("not serving after the SIGHUP: %v", err)
	} else {
		c.Close()
	}
}

// /metrics has the spam engine's and the store's metrics once the daemons
// run; /healthz is liveness, /readyz names the dependency that is down.
func TestServeMetricsAndReadiness(t *testing.T) {
	metrics := testenv.FreeAddr(t)
	redis := testenv.FreeAddr(t) // nothing listens there
	cfg := fmt.Sprintf(`data_dir: %s
metrics: {listen: %s}
store:
  backend: redis
  redis: {addr: %q, dial_timeout: 200ms}
spam: {bayes: {enabled: false}}
authcheck: {spf: false, dkim: false, dmarc: false}
milter: {listen: {address: %s}}
policyd:
  listen: {address: %s}
  checks: [greylist]
`, usersDataDir(t), metrics, redis, testenv.FreeAddr(t), testenv.FreeAddr(t))
	serveInProcess(t, cfg, "milter", "policyd")
	base := "http://" + metrics
	code, body := httpGet(t, base+"/healthz")
	if code != 200 {
		t.Errorf("/healthz = %d %q with Redis down, want 200 (liveness)", code, body)
	}
	code, body = httpGet(t, base+"/readyz")
	// milter and greylisting policyd do not look users up: no directory check
	if code != 503 || !strings.Contains(body, "store: down") || strings.Contains(body, "directory") {
		t.Errorf("/readyz = %d %q, want 503 naming the store (and only it)", code, body)
	}
	_, body = httpGet(t, base+"/metrics")
	for _, m := range []string{"dovetail_spam_scan_seconds", "dovetail_store_op_seconds", "dovetail_store_errors_total", "dovetail_config_last_reload_successful 1"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
