package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// Service is one protocol server. Serve blocks until the listener is closed;
// Shutdown stops accepting, lets in-flight work finish until ctx ends, then
// closes what is left.
type Service interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// Unit is a named service and where it listens.
type Unit struct {
	Name     string
	Listener config.Listener
	Service  Service
}

// ReadyCheck is one dependency /readyz reports on (the directory, the store):
// Check returns nil while the dependency answers.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// readyTimeout bounds each /readyz check: a probe that hangs is a dependency
// that is down, and the prober must get its answer before its own timeout.
const readyTimeout = 2 * time.Second

// httpIdleTimeout closes a connection to the metrics endpoint that idles
// between requests; without it net/http keeps one open for as long as the
// client does, each holding a file descriptor of the process the mail
// daemons run in. httpWriteTimeout likewise ends a response its client does
// not read (longer than /readyz takes).
const (
	httpIdleTimeout  = 2 * time.Minute
	httpWriteTimeout = 30 * time.Second
)

// Runtime runs units until a signal or ctx ends them.
type Runtime struct {
	Log         *slog.Logger
	Units       []Unit
	MetricsAddr string              // "" disables /metrics, /healthz and /readyz
	Gatherer    prometheus.Gatherer // for /metrics
	// Registerer, if set, gets dovetail_config_last_reload_successful and
	// dovetail_config_last_reload_success_timestamp_seconds.
	Registerer prometheus.Registerer
	Grace      time.Duration // phase one of shutdown; default 10s (see SetGrace)
	// Reload is called on SIGHUP. It must be all or nothing: build and check
	// the new state of every unit first and swap it in only when all of it
	// succeeded, so that an error means nothing changed.
	Reload func(context.Context) error
	// Signals are the signals caught at process start (CatchSignals); when nil
	// Run catches them itself.
	Signals *Signals
	// Checks are what /readyz checks, concurrently, each within readyTimeout.
	Checks []ReadyCheck
	// Ready, if set, is closed once every listener is open.
	Ready chan struct{}

	// readyWithin and httpIdle are readyTimeout and httpIdleTimeout unless a
	// test shortens them.
	readyWithin, httpIdle time.Duration

	healthy    atomic.Bool
	checkMu    sync.Mutex
	checking   []*checkFlight // the run of Checks[i] in progress (readyz)
	serving    string         // "serving milter, lmtpd, …", for the service manager's status line
	grace      atomic.Int64
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
}

// SetGrace changes the shutdown grace period of a running Runtime (reload).
func (r *Runtime) SetGrace(d time.Duration) { r.grace.Store(int64(d)) }

// Run opens every listener first (so a bad address fails before anything
// serves), serves, and on SIGTERM/SIGINT or ctx end shuts down in two phases.
func (r *Runtime) Run(ctx context.Context) error {
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	sigs := r.Signals
	if sigs == nil {
		sigs, ctx = CatchSignals(ctx)
		defer sigs.Stop()
	}
	if len(r.Units) == 0 {
		return errors.New("no daemons configured: list some under 'daemons:' in the config")
	}
	if r.grace.Load() == 0 {
		r.grace.Store(int64(r.Grace))
	}
	r.initMetrics()
	r.checking = make([]*checkFlight, len(r.Checks))
	if r.readyWithin == 0 {
		r.readyWithin = readyTimeout
	}
	if r.httpIdle == 0 {
		r.httpIdle = httpIdleTimeout
	}
	lns := make([]net.Listener, 0, len(r.Units))
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, u := range r.Units {
		ln, err := Listen(u.Listener)
		if err != nil {
			closeAll()
			return fmt.Errorf("%s: %w", u.Name, err)
		}
		lns = append(lns, ln)
	}
	var httpSrv *http.Server
	if r.MetricsAddr != "" {
		ln, err := net.Listen("tcp", r.MetricsAddr)
		if err != nil {
			closeAll()
			return fmt.Errorf("metrics: listen %s: %w", r.MetricsAddr, err)
		}
		httpSrv = &http.Server{Handler: r.httpHandler(), ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout: r.httpIdle, WriteTimeout: httpWriteTimeout}
		go httpSrv.Serve(ln)
		log.Info("metrics listening", "addr", ln.Addr().String())
	}

	errc := make(chan error, len(r.Units))
	var wg sync.WaitGroup
	for i, u := range r.Units {
		wg.Add(1)
		go func(u Unit, ln net.Listener) {
			defer wg.Done()
			log.Info("listening", "daemon", u.Name, "addr", ln.Addr().String())
			if err := u.Service.Serve(ln); err != nil && !isClosed(err) {
				errc <- fmt.Errorf("%s: %w", u.Name, err)
			}
		}(u, lns[i])
	}
	r.healthy.Store(true)
	if r.Ready != nil {
		close(r.Ready)
	}
	names := make([]string, len(r.Units))
	for i, u := range r.Units {
		names[i] = u.Name
	}
	r.serving = "serving " + strings.Join(names, ", ")
	notify(log, "READY=1", status("%s", r.serving))

	held, hup, stop := sigs.takeOver()
	var runErr error
	if held != nil {
		log.Info("shutting down", "signal", held.String(), "during", "startup")
	}
	stopping := func() { log.Info("shutting down", "signal", sigs.stopSignal().String()) }
loop:
	for held == nil {
		// A stop wins over a pending reload (held during startup, or asked
		// for while the last one ran).
		select {
		case <-stop:
			stopping()
			break loop
		default:
		}
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			log.Error("daemon failed", "err", err)
			runErr = err
			break loop
		case <-stop:
			stopping()
			break loop
		case <-hup:
			select {
			case <-stop: // both ready at once: the stop wins
				stopping()
				break loop
			default:
			}
			r.reload(ctx, stop, log)
		}
	}
	r.healthy.Store(false)
	notify(log, "STOPPING=1", status("shutting down"))
	r.shutdown(log)
	// A service whose Serve had not started yet when Shutdown ran would
	// otherwise start accepting on a listener nobody closes.
	closeAll()
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		httpSrv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	return runErr
}

func (r *Runtime) initMetrics() {
	r.reloadOK = registerGauge(r.Registerer, prometheus.GaugeOpts{
		Name: "dovetail_config_last_reload_successful",
		Help: "Whether the last configuration reload (SIGHUP) succeeded (1) or was refused (0).",
	})
	r.reloadTime = registerGauge(r.Registerer, prometheus.GaugeOpts{
		Name: "dovetail_config_last_reload_success_timestamp_seconds",
		Help: "Time of the last successful configuration load (start or SIGHUP), in seconds since the epoch.",
	})
	// Starting is the first successful load, as in Prometheus' own metric.
	r.reloadOK.Set(1)
	r.reloadTime.SetToCurrentTime()
}

// registerGauge registers a gauge, or returns the one already registered
// under its name (a second Run on the same registry, in tests).
func registerGauge(reg prometheus.Registerer, opts prometheus.GaugeOpts) prometheus.Gauge {
	g := prometheus.NewGauge(opts)
	if reg == nil {
		return g
	}
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(prometheus.Gauge); ok {
				return ex
			}
		}
	}
	return g
}

// reload runs r.Reload with a context that a stop signal cancels: a reload
// waiting for a dependency must not hold up a shutdown.
func (r *Runtime) reload(ctx context.Context, stop <-chan struct{}, log *slog.Logger) {
	log.Info("reloading")
	notify(log, reloadingState(), status("reloading"))
	if r.Reload != nil {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := r.Reload(ctx); err != nil {
			r.reloadOK.Set(0)
			log.Error("reload failed, keeping the running configuration", "err", err)
			notify(log, "READY=1", status("%s; reload failed, running the previous configuration: %v", r.serving, err))
			return
		}
	}
	r.reloadOK.Set(1)
	r.reloadTime.SetToCurrentTime()
	log.Info("reloaded")
	notify(log, "READY=1", status("%s; reloaded %s", r.serving, time.Now().Format(time.DateTime)))
}

// shutdown is phase one (stop accepting, drain within Grace) and, when Grace
// runs out, phase two (the services' contexts end and they close what is left).
func (r *Runtime) shutdown(log *slog.Logger) {
	grace := time.Duration(r.grace.Load())
	if grace <= 0 {
		grace = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, u := range r.Units {
		wg.Add(1)
		go func(u Unit) {
			defer wg.Done()
			if err := u.Service.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				log.Warn("shutdown", "daemon", u.Name, "err", err)
			}
		}(u)
	}
	wg.Wait()
}

func (r *Runtime) httpHandler() http.Handler {
	mux := http.NewServeMux()
	g := r.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	// Liveness: the process serves. A dependency that is down must not get the
	// daemon restarted (that does not bring LDAP back); /readyz says it.
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.healthy.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", r.readyz)
	return mux
}

// readyz answers 200 when the daemons serve and every dependency answers, else
// 503; the body has one line per check ("store: ok", "directory: down: …").
func (r *Runtime) readyz(w http.ResponseWriter, req *http.Request) {
	if !r.healthy.Load() {
		http.Error(w, "not serving", http.StatusServiceUnavailable)
		return
	}
	// The wait is bounded here, not only by the checks' contexts: a check
	// that does not return when its context ends (a call stuck on a lock or
	// a full disk) must still get the prober its 503. Probes that overlap
	// share a check in progress rather than each starting one, so a stuck
	// check is one goroutine, not one more per probe.
	wait, cancel := context.WithTimeout(req.Context(), r.readyWithin+r.readyWithin/4)
	defer cancel()
	flights := make([]*checkFlight, len(r.Checks))
	for i := range r.Checks {
		flights[i] = r.startCheck(i)
	}
	errs := make([]error, len(r.Checks))
	for i, f := range flights {
		select {
		case <-f.done:
			errs[i] = f.err
		case <-wait.Done():
			errs[i] = fmt.Errorf("no answer within %v", r.readyWithin)
		}
	}
	var b strings.Builder
	code := http.StatusOK
	for i, c := range r.Checks {
		if errs[i] != nil {
			code = http.StatusServiceUnavailable
			fmt.Fprintf(&b, "%s: down: %v\n", c.Name, errs[i])
		} else {
			fmt.Fprintf(&b, "%s: ok\n", c.Name)
		}
	}
	if code == http.StatusOK {
		b.WriteString("ready\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(b.String()))
}

// checkFlight is one run of a ReadyCheck; err is set when done is closed.
type checkFlight struct {
	done chan struct{}
	err  error
}

// startCheck returns the run of Checks[i] in progress, or starts one. It runs
// within readyTimeout of its start, whichever probe started it.
func (r *Runtime) startCheck(i int) *checkFlight {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	if f := r.checking[i]; f != nil {
		return f
	}
	f := &checkFlight{done: make(chan struct{})}
	r.checking[i] = f
	go func() {
		f.err = r.runCheck(i)
		r.checkMu.Lock()
		r.checking[i] = nil
		r.checkMu.Unlock()
		close(f.done)
	}()
	return f
}

// runCheck runs Checks[i] within readyWithin. A check that panics (its own
// goroutine: nothing else would recover it, and the process serves all the
// mail daemons) reports the dependency down instead.
func (r *Runtime) runCheck(i int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check panicked: %v", p)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), r.readyWithin)
	defer cancel()
	return r.Checks[i].Check(ctx)
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed)
}
