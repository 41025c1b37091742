package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/policyd"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
	"github.com/dovetail-mail/dovetail/store/sqlite"
)

// openRedis is set by redis.go when the Redis backend is built in.
var openRedis func(ctx context.Context, addr string) (store.Store, error)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:10040", "listen address")
	backend := fs.String("store", "sqlite", "sqlite, redis or mem")
	sqlitePath := fs.String("sqlite", "", "SQLite file (store=sqlite)")
	writeBehind := fs.Duration("write-behind", store.DefaultConfig().WriteBehind.D(), "SQLite write-behind interval (store.write_behind; 0 = write through)")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "Redis address (store=redis)")
	wlClients := fs.String("whitelist-clients", "", "postgrey whitelist_clients file")
	wlRcpts := fs.String("whitelist-recipients", "", "postgrey whitelist_recipients file")
	logFile := fs.String("log", "", "decision log file (one line per request, like postgrey's); empty = no log")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole serve run to this file")
	traceFile := fs.String("trace", "", "write a runtime/trace execution trace of the whole serve run to this file (latency tails)")
	memProfile := fs.String("memprofile", "", "write an allocation profile (every allocation of the serve run) to this file at exit")
	_ = fs.Parse(args)

	// The collector settings `dovetail` runs with (config runtime.gc_percent).
	daemon.TuneGC(daemon.DefaultGCPercent, 0, os.Getenv)
	if *memProfile != "" {
		runtime.MemProfileRate = 4096
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}

	for _, r := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{{*cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {*traceFile, trace.Start, trace.Stop}} {
		if r.path == "" {
			continue
		}
		stop, err := record(r.path, r.start, r.stop)
		if err != nil {
			return err
		}
		defer stop()
	}

	var st store.Store
	var err error
	switch *backend {
	case "sqlite":
		if *sqlitePath == "" {
			return fmt.Errorf("-sqlite is required")
		}
		st, err = sqlite.Open(ctx, sqlite.Options{Path: *sqlitePath, WriteBehind: *writeBehind,
			HotKeys: store.DefaultConfig().HotKeys})
	case "redis":
		if openRedis == nil {
			return fmt.Errorf("this build has no Redis store")
		}
		st, err = openRedis(ctx, *redisAddr)
	case "mem":
		st = mem.New()
	default:
		return fmt.Errorf("unknown store %q", *backend)
	}
	if err != nil {
		return fmt.Errorf("open %s store: %w", *backend, err)
	}
	defer st.Close()

	log := slog.New(slog.DiscardHandler)
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		// As dovetail's daemons log (internal/cli): slog's text format, lines
		// lingering up to daemon.LogLinger, warnings written at once.
		lw := daemon.NewLogWriter(f, daemon.LogLinger)
		defer lw.Flush()
		log = slog.New(daemon.FlushOnWarn(daemon.NewTextHandler(lw, nil), lw))
	}
	cfg := benchConfig(*wlClients, *wlRcpts)
	srv, err := policyd.New(cfg, policyd.Deps{Store: st, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(bufio.NewWriter(os.Stderr), "policyd-bench serving on %s (%s)\n", ln.Addr(), *backend)
	if err := srv.Serve(ln); err != nil && err != policyd.ErrServerClosed {
		return err
	}
	return nil
}

// benchConfig mirrors the postgrey peer's flags (--delay=300, /24 and /64
// networks, auto-whitelist after 5, the Debian whitelists) and adds a rate limit
// per client address evaluated on every request (before greylisting, so it
// counts every request rather than only those greylisting lets through; the
// default per-SASL-user limits would not apply to this unauthenticated MX stream).
func benchConfig(wlClients, wlRcpts string) policyd.Config {
	cfg := policyd.DefaultConfig()
	cfg.Hostname = "mx.example.com"
	cfg.Checks = []string{policyd.CheckRateLimit, policyd.CheckGreylist}
	cfg.Greylist.ExemptNetworks = nil
	cfg.Greylist.ExemptRecipients = nil
	cfg.Greylist.ExemptClientsFile = wlClients
	cfg.Greylist.ExemptRecipientsFile = wlRcpts
	cfg.Greylist.Action = "DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/help/example.com.html"
	cfg.RateLimit.Limits = []policyd.RateLimit{
		{Name: "ip-hour", Key: policyd.KeyClientAddress, Messages: 1000, Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 Rate limit exceeded"},
	}
	return cfg
}

// record starts a whole-run recorder (CPU profile, execution trace) writing to
// path and returns what stops it and closes the file.
func record(path string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		stop()
		f.Close()
	}, nil
}
