package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
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
	// Reload, when set, is called on SIGHUP after the new config was loaded and
	// validated; it must build the new state fully before swapping it in.
	Reload func(ctx context.Context) error
}

// Runtime runs units until a signal or ctx ends them.
type Runtime struct {
	Log         *slog.Logger
	Units       []Unit
	MetricsAddr string                      // "" disables /metrics and /healthz
	Gatherer    prometheus.Gatherer         // for /metrics
	Grace       time.Duration               // phase one of shutdown; default 10s
	Reload      func(context.Context) error // called on SIGHUP before the units' Reload
	// Ready, if set, is closed once every listener is open.
	Ready chan struct{}

	healthy atomic.Bool
}

// Run opens every listener first (so a bad address fails before anything
// serves), serves, and on SIGTERM/SIGINT or ctx end shuts down in two phases.
func (r *Runtime) Run(ctx context.Context) error {
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	if len(r.Units) == 0 {
		return errors.New("no daemons configured: list some under 'daemons:' in the config")
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
		httpSrv = &http.Server{Handler: r.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
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

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			log.Error("daemon failed", "err", err)
			runErr = err
			break loop
		case s := <-sigs:
			if s == syscall.SIGHUP {
				r.reload(ctx, log)
				continue
			}
			log.Info("shutting down", "signal", s.String())
			break loop
		}
	}
	r.healthy.Store(false)
	r.shutdown(log)
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		httpSrv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	return runErr
}

func (r *Runtime) reload(ctx context.Context, log *slog.Logger) {
	log.Info("reloading")
	if r.Reload != nil {
		if err := r.Reload(ctx); err != nil {
			log.Error("reload failed, keeping the running configuration", "err", err)
			return
		}
	}
	for _, u := range r.Units {
		if u.Reload == nil {
			continue
		}
		if err := u.Reload(ctx); err != nil {
			log.Error("reload failed, keeping the running state", "daemon", u.Name, "err", err)
		}
	}
	log.Info("reloaded")
}

// shutdown is phase one (stop accepting, drain within Grace) and, when Grace
// runs out, phase two (the services' contexts end and they close what is left).
func (r *Runtime) shutdown(log *slog.Logger) {
	grace := r.Grace
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
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.healthy.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed)
}
