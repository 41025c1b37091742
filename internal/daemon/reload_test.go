package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// testRuntime is a Runtime with one echo unit, fed signals through a channel.
type testRuntime struct {
	rt      *Runtime
	sigs    chan os.Signal
	logs    *testenv.LogBuffer
	reg     *prometheus.Registry
	metrics string
	done    chan error
	ctx     context.Context
}

func newTestRuntime(t *testing.T, reload func(context.Context) error, checks ...ReadyCheck) *testRuntime {
	t.Helper()
	tr := &testRuntime{sigs: make(chan os.Signal, 8), logs: &testenv.LogBuffer{}, reg: prometheus.NewRegistry(),
		metrics: testenv.FreeAddr(t), done: make(chan error, 1)}
	var s *Signals
	s, tr.ctx = watchSignals(context.Background(), tr.sigs)
	t.Cleanup(s.Stop)
	tr.rt = &Runtime{
		Log:         slog.New(slog.NewTextHandler(tr.logs, nil)),
		Units:       []Unit{{Name: "echo", Listener: config.Listener{Address: testenv.FreeAddr(t)}, Service: &echoService{}}},
		MetricsAddr: tr.metrics, Gatherer: tr.reg, Registerer: tr.reg,
		Grace: time.Second, Reload: reload, Signals: s, Checks: checks, Ready: make(chan struct{}),
	}
	return tr
}

func (tr *testRuntime) start(t *testing.T) {
	t.Helper()
	go func() { tr.done <- tr.rt.Run(tr.ctx) }()
	select {
	case <-tr.rt.Ready:
	case err := <-tr.done:
		t.Fatal(err)
	}
}

func (tr *testRuntime) stop(t *testing.T) {
	t.Helper()
	tr.sigs <- syscall.SIGTERM
	select {
	case err := <-tr.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no stop after SIGTERM:\n%s", tr.logs.String())
	}
}

func waitLog(t *testing.T, logs *testenv.LogBuffer, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), s); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in log:\n%s", s, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A SIGHUP that arrives while the daemon is still starting is held and applied
// once everything listens; a stop signal during startup cancels the startup.
func TestSignalsDuringStartup(t *testing.T) {
	t.Run("SIGHUP held", func(t *testing.T) {
		var reloads int
		var mu sync.Mutex
		tr := newTestRuntime(t, func(context.Context) error { mu.Lock(); reloads++; mu.Unlock(); return nil })
		tr.sigs <- syscall.SIGHUP
		tr.sigs <- syscall.SIGHUP
		time.Sleep(20 * time.Millisecond) // startup still going on
		if tr.ctx.Err() != nil {
			t.Fatal("SIGHUP during startup cancelled it")
		}
		tr.start(t)
		waitLog(t, tr.logs, "msg=reloaded")
		tr.stop(t)
		if reloads != 1 {
			t.Errorf("%d reloads for the SIGHUPs held during startup, want 1", reloads)
		}
	})
	t.Run("SIGTERM cancels", func(t *testing.T) {
		tr := newTestRuntime(t, nil)
		tr.sigs <- syscall.SIGTERM
		select {
		case <-tr.ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("SIGTERM during startup did not cancel it")
		}
		go func() { tr.done <- tr.rt.Run(tr.ctx) }()
		select {
		case err := <-tr.done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not stop for the SIGTERM held during startup")
		}
	})
}

// A refused reload says so once, never "reloaded", and the reload metrics
// follow (Prometheus' own convention).
func TestReloadOutcome(t *testing.T) {
	fail := true
	var mu sync.Mutex
	tr := newTestRuntime(t, func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("policyd: geoip database /nonexistent.mmdb: no such file")
		}
		return nil
	})
	tr.start(t)
	defer tr.stop(t)
	gauge := func(name string) float64 { return testenv.Gauge(t, tr.reg, name) }
	ok := func() float64 { return gauge("dovetail_config_last_reload_successful") }
	stamp := func() float64 { return gauge("dovetail_config_last_reload_success_timestamp_seconds") }
	start := stamp()
	if ok() != 1 || start == 0 {
		t.Fatalf("after start: successful=%v timestamp=%v", ok(), start)
	}
	tr.sigs <- syscall.SIGHUP
	waitLog(t, tr.logs, "reload failed, keeping the running configuration")
	if strings.Contains(tr.logs.String(), "msg=reloaded") {
		t.Errorf("a refused reload logged msg=reloaded:\n%s", tr.logs.String())
	}
	if n := strings.Count(tr.logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines for one refused reload, want 1:\n%s", n, tr.logs.String())
	}
	if ok() != 0 || stamp() != start {
		t.Errorf("after a refused reload: successful=%v timestamp changed=%v", ok(), stamp() != start)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	time.Sleep(1100 * time.Millisecond) // the timestamp has a resolution of seconds in practice
	tr.sigs <- syscall.SIGHUP
	waitLog(t, tr.logs, "msg=reloaded")
	if ok() != 1 || stamp() <= start {
		t.Errorf("after a good reload: successful=%v timestamp=%v (start %v)", ok(), stamp(), start)
	}
	body := get(t, "http://"+tr.metrics+"/metrics")
	for _, m := range []string{"dovetail_config_last_reload_successful 1", "dovetail_config_last_reload_success_timestamp_seconds "} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	code, body := getCode(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

func getCode(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /healthz is liveness (200 while serving, whatever the dependencies do);
// /readyz checks the dependencies, each within a timeout, and names what is down.
func TestHealthAndReadiness(t *testing.T) {
	var storeDown, dirHangs atomic.Bool
	tr := newTestRuntime(t, nil,
		ReadyCheck{Name: "directory", Check: func(ctx context.Context) error {
			if dirHangs.Load() {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}},
		ReadyCheck{Name: "store", Check: func(context.Context) error {
			if storeDown.Load() {
				return errors.New("redis: connection refused")
			}
			return nil
		}},
	)
	tr.start(t)
	defer tr.stop(t)
	base := "http://" + tr.metrics
	if code, body := getCode(t, base+"/readyz"); code != 200 || !strings.Contains(body, "directory: ok") || !strings.Contains(body, "store: ok") {
		t.Errorf("/readyz all up: %d %q", code, body)
	}
	storeDown.Store(true)
	dirHangs.Store(true)
	start := time.Now()
	code, body := getCode(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "store: down: redis: connection refused") || !strings.Contains(body, "directory: down: context deadline exceeded") {
		t.Errorf("/readyz with store down and directory hanging: %d %q", code, body)
	}
	if d := time.Since(start); d > readyTimeout+2*time.Second {
		t.Errorf("/readyz took %v", d)
	}
	if code, body := getCode(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz with dependencies down: %d %q, want 200 (liveness)", code, body)
	}
}

// deliver sends sig as the signal package does: without blocking, so a
// signal is dropped when the channel is full.
func (tr *testRuntime) deliver(sig os.Signal) {
	select {
	case tr.sigs <- sig:
	default:
	}
}

// A SIGHUP storm during a slow reload (a config management run, a logrotate
// postrotate per log file) ends in one more reload, not one per SIGHUP, and a
// SIGTERM arriving in it is not lost: it cancels the reload in progress and
// the daemon drains and stops.
func TestSIGTERMDuringSIGHUPStorm(t *testing.T) {
	var reloads atomic.Int32
	started := make(chan struct{}, 100)
	tr := newTestRuntime(t, func(ctx context.Context) error {
		reloads.Add(1)
		started <- struct{}{}
		select {
		case <-ctx.Done(): // a reload that waits for a dependency
			return ctx.Err()
		case <-time.After(3 * time.Second):
			return nil
		}
	})
	tr.start(t)
	tr.deliver(syscall.SIGHUP)
	<-started
	for range 50 {
		tr.deliver(syscall.SIGHUP)
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	tr.deliver(syscall.SIGTERM)
	select {
	case err := <-tr.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("SIGTERM during a SIGHUP storm did not stop the daemon (%d reloads so far):\n%s", reloads.Load(), tr.logs.String())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stopping took %v: the reload in progress was not cancelled", d)
	}
	if n := reloads.Load(); n > 2 {
		t.Errorf("%d reloads for one SIGHUP storm, want at most 2", n)
	}
}

// A check that does not return when its context ends (a backend call stuck
// in a lock or a write to a full disk) still gets /readyz its 503 within the
// timeout, and probes repeated meanwhile do not start another copy each.
func TestReadinessCheckThatIgnoresItsContext(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var calls atomic.Int32
	tr := newTestRuntime(t, nil, ReadyCheck{Name: "store", Check: func(context.Context) error {
		calls.Add(1)
		<-release
		return nil
	}})
	tr.rt.readyWithin = 100 * time.Millisecond
	tr.start(t)
	defer tr.stop(t)
	client := &http.Client{Timeout: readyTimeout + 3*time.Second}
	for range 3 {
		start := time.Now()
		resp, err := client.Get("http://" + tr.metrics + "/readyz")
		if err != nil {
			t.Fatalf("/readyz while a check does not return: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body := resp.StatusCode, string(b)
		if code != 503 || !strings.Contains(body, "store: down:") {
			t.Errorf("/readyz with a hung check: %d %q", code, body)
		}
		if d := time.Since(start); d > tr.rt.readyWithin+time.Second {
			t.Errorf("/readyz took %v", d)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the hung check was started %d times, want once until it returns", n)
	}
}

// A client that keeps its connection to /metrics open after a request (or
// thousands of them, one request each) does not hold a file descriptor of
// the mail daemons' process forever: an idle connection is closed.
func TestMetricsIdleConnectionClosed(t *testing.T) {
	tr := newTestRuntime(t, nil)
	tr.rt.httpIdle = 200 * time.Millisecond
	tr.start(t)
	defer tr.stop(t)
	c, err := net.Dial("tcp", tr.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The response is complete; now idle. The server must close its end.
	var buf [1]byte
	if _, err := c.Read(buf[:]); err != io.EOF {
		t.Errorf("idle keep-alive connection: read = %v, want EOF (closed by the server)", err)
	}
}

// A readiness check that panics reports its dependency down; the process,
// which serves every mail daemon, goes on.
func TestReadinessCheckThatPanics(t *testing.T) {
	tr := newTestRuntime(t, nil, ReadyCheck{Name: "store", Check: func(context.Context) error {
		panic("nil map in the store's ping")
	}})
	tr.start(t)
	defer tr.stop(t)
	code, body := getCode(t, "http://"+tr.metrics+"/readyz")
	if code != 503 || !strings.Contains(body, "store: down: check panicked") {
		t.Fatalf("/readyz with a panicking check: %d %q", code, body)
	}
	if code, _ := getCode(t, "http://"+tr.metrics+"/healthz"); code != 200 {
		t.Fatalf("/healthz after the panic: %d", code)
	}
}
