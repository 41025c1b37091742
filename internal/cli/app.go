package cli

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// App is what every command shares: the loaded config, a logger, a metrics
// registry and lazily opened shared backends (directory, store).
type App struct {
	ConfigPath string
	Stdin      io.Reader
	Stdout     io.Writer
	Stderr     io.Writer
	Log        *slog.Logger
	Registry   *prometheus.Registry

	be      backends
	mu      sync.Mutex
	cfg     *Config
	closers []func() error

	// logs makes Log follow log.level and log.format across reloads.
	logs *logSwitch
	// lingerLogs: Info lines may wait daemon.LogLinger (daemons only).
	lingerLogs bool
	// signals are caught before a daemon command loads its config (root.go).
	signals *daemon.Signals
	// serving is set while daemons run: the shared backends and engines then
	// register their metrics (one-shot commands have no /metrics to show them).
	serving bool
	// ready, if set, is closed once the daemons listen (tests).
	ready chan struct{}
}

// Config returns the current configuration (replaced on a successful reload).
func (a *App) Config() *Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// load reads the config file (or the embedded default) and sets up logging.
func (a *App) load() error {
	cfg, err := LoadConfig(a.ConfigPath)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	if a.logs == nil {
		var linger time.Duration
		if a.lingerLogs {
			linger = daemon.LogLinger
		}
		a.logs = newLogSwitch(a.Stderr, cfg.Log, linger)
	} else {
		a.logs.set(cfg.Log)
	}
	a.Log = a.logs.logger()
	if a.Registry == nil {
		a.Registry = prometheus.NewRegistry()
		a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return nil
}

// registerer is where the shared backends and engines register their metrics:
// the app's registry while daemons run, none for one-shot commands.
func (a *App) registerer() prometheus.Registerer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.serving || a.Registry == nil {
		return nil
	}
	return a.Registry
}

// tuneGC applies the collector settings to a running daemon (one-shot commands
// such as learn keep Go's defaults: their heaps can be large, and five times a
// large heap is too much to ask). It returns the settings in force.
func tuneGC(r RuntimeConfig) (gcPercent int, memoryLimit int64) {
	return daemon.TuneGC(r.GCPercent, int64(r.MemoryLimit), os.Getenv)
}

// onClose registers cleanup run by Close in reverse order.
func (a *App) onClose(f func() error) {
	a.mu.Lock()
	a.closers = append(a.closers, f)
	a.mu.Unlock()
}

// Close releases the shared backends.
func (a *App) Close() {
	a.mu.Lock()
	cs := a.closers
	a.closers = nil
	a.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i](); err != nil && a.Log != nil {
			a.Log.Warn("close", "err", err)
		}
	}
	a.flushLog()
}

// flushLog writes the log lines still lingering (logSwitch).
func (a *App) flushLog() {
	if a.logs != nil {
		a.logs.flush()
	}
}
