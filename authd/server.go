// Package authd serves the Dovecot auth-client protocol, the one Postfix speaks
// with smtpd_sasl_type = dovecot, and answers from a directory (static users
// file or LDAP). It is a drop-in for Dovecot's auth socket for SMTP AUTH.
//
// Behaviour that Postfix relies on (see shared guides/protocols.md §1): the MECH
// lines come before SPID; OK always carries user=; every FAIL becomes a 535 in
// Postfix and only a closed connection becomes a 454, so when the directory is
// unavailable the connection is closed (OnUnavailable: disconnect).
package authd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/directory/password"
	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// Server is one authd instance. Create it with New, run it with Serve.
type Server struct {
	cfg      Config
	dir      directory.Directory
	secrets  directory.SecretReader // nil: no CRAM-MD5/SCRAM
	log      *slog.Logger
	m        *metrics
	mechs    []string        // advertised, in order
	offered  map[string]bool // advertised set
	hostname string
	cacheP   atomic.Pointer[cache]   // swapped on Reload
	penP     atomic.Pointer[penalty] // swapped on Reload

	ctx    context.Context // cancelled when Shutdown gives up waiting
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool
	wg        sync.WaitGroup
	active    atomic.Int64
	cuid      atomic.Uint32
}

// New builds a server over dir. reg may be nil (no metrics), log may be nil.
func New(cfg Config, dir directory.Directory, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authd: %w", err)
	}
	if dir == nil {
		return nil, errors.New("authd: no directory")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, dir: dir, log: log, m: newMetrics(reg), offered: map[string]bool{},
		hostname: cfg.Hostname, listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{},
	}
	s.penP.Store(newPenalty(cfg.FailureDelay.D(), cfg.FailureDelayMax.D()))
	if sr, ok := dir.(directory.SecretReader); ok {
		s.secrets = sr
	}
	for _, m := range cfg.Mechanisms {
		m = strings.ToUpper(m)
		if s.offered[m] {
			continue
		}
		if needsSecret[m] && s.secrets == nil {
			log.Info("mechanism not offered: the directory cannot read stored passwords (LDAP auth-bind)", "mechanism", m)
			continue
		}
		s.offered[m] = true
		s.mechs = append(s.mechs, m)
	}
	if len(s.mechs) == 0 {
		return nil, errors.New("authd: no usable mechanism for this directory (add PLAIN or LOGIN)")
	}
	if s.hostname == "" {
		s.hostname, _ = os.Hostname()
		if s.hostname == "" {
			s.hostname = "localhost"
		}
	}
	s.cacheP.Store(newCacheFor(cfg))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Mechanisms returns the advertised mechanisms.
func (s *Server) Mechanisms() []string { return append([]string(nil), s.mechs...) }

func newCacheFor(cfg Config) *cache {
	if cfg.CacheSize > 0 && cfg.CacheTTL > 0 {
		return newCache(cfg.CacheTTL.D(), cfg.CacheNegativeTTL.D(), int64(cfg.CacheSize))
	}
	return nil
}

func (s *Server) cache() *cache { return s.cacheP.Load() }
func (s *Server) pen() *penalty { return s.penP.Load() }

// FlushCache forgets every cached verdict.
func (s *Server) FlushCache() {
	if c := s.cache(); c != nil {
		c.flush()
	}
}

// Reload applies a new config (SIGHUP): the cache is rebuilt empty with the new
// TTLs and size, so directory changes (a disabled user, a new password) take
// effect at once, and the penalty settings are replaced. The listener,
// mechanisms and timeouts stay as they were started; changing them needs a
// restart, which is logged.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("authd: %w", err)
	}
	s.cacheP.Store(newCacheFor(cfg))
	s.penP.Store(newPenalty(cfg.FailureDelay.D(), cfg.FailureDelayMax.D()))
	if cfg.Listen != s.cfg.Listen || strings.Join(cfg.Mechanisms, ",") != strings.Join(s.cfg.Mechanisms, ",") ||
		cfg.LookupTimeout != s.cfg.LookupTimeout || cfg.OnUnavailable != s.cfg.OnUnavailable ||
		cfg.MaxConnections != s.cfg.MaxConnections || cfg.MaxPending != s.cfg.MaxPending ||
		cfg.RequestTimeout != s.cfg.RequestTimeout || cfg.IdleTimeout != s.cfg.IdleTimeout || cfg.Hostname != s.cfg.Hostname {
		s.log.Warn("authd: listen, mechanisms, timeouts and limits change only on restart; cache and penalty settings were reloaded")
	}
	return nil
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Serve accepts connections on ln until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	for {
		nc, err := daemon.Accept(ln, s.log, s.isClosing)
		if err != nil {
			if s.isClosing() {
				return nil
			}
			return fmt.Errorf("authd: accept: %w", err)
		}
		if s.active.Load() >= int64(s.cfg.MaxConnections) {
			s.m.rejected.Inc()
			s.log.Warn("too many connections; closing a new one", "max_connections", s.cfg.MaxConnections, "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		c := s.newConn(nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.active.Add(1)
		s.m.conns.Inc()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				s.active.Add(-1)
				s.m.conns.Dec()
				s.wg.Done()
			}()
			c.serve()
		}()
	}
}

// Shutdown stops accepting, lets requests in progress finish until ctx ends,
// then closes every connection. Idle connections are closed at once: Postfix
// reconnects to the next instance.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			s.cancel()
			return nil
		case <-ticker.C:
			s.mu.Lock()
			for c := range s.conns {
				c.closeIfIdle()
			}
			s.mu.Unlock()
		case <-ctx.Done():
			s.cancel() // abort directory calls and penalty sleeps
			s.mu.Lock()
			for c := range s.conns {
				c.close()
			}
			s.mu.Unlock()
			<-done
			return ctx.Err()
		}
	}
}

// checkPlain verifies a login/password pair (PLAIN, LOGIN) through the cache
// and the directory.
func (s *Server) checkPlain(ctx context.Context, login, pw string) outcome {
	if login == "" || len(login) > 512 || strings.ContainsRune(login, 0) {
		return fail(login, "invalid user name")
	}
	if pw == "" {
		return fail(login, "empty password")
	}
	var key [32]byte
	cache := s.cache()
	if cache.enabled() {
		key = cache.keyFor(login, pw)
		if g, ok, found := cache.get(key); found {
			s.m.cacheHits.Inc()
			if ok {
				o := s.accepted(login, g)
				o.cached = true
				return o
			}
			o := fail(login, "cached failure")
			o.cached = true
			return o
		}
		s.m.cacheMisses.Inc()
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LookupTimeout.D())
	defer cancel()
	u, err := s.dir.Authenticate(lctx, login, pw)
	if err == nil && (u == nil || !u.Enabled) {
		err = fmt.Errorf("directory returned a disabled user: %w", directory.ErrDisabled) // belt and braces
	}
	switch {
	case err == nil:
		g := grantFor(login, u)
		if cache.enabled() {
			cache.put(key, login, g, true)
		}
		return s.accepted(login, g)
	case errors.Is(err, directory.ErrDisabled):
		if cache.enabled() {
			cache.forget(login)
			cache.put(key, login, grant{}, false)
		}
		return outcome{kind: kindFail, login: login, err: err}
	case errors.Is(err, directory.ErrInvalidCredentials), errors.Is(err, directory.ErrNotFound):
		if cache.enabled() {
			cache.put(key, login, grant{}, false)
		}
		return outcome{kind: kindFail, login: login, err: err}
	}
	// ErrUnavailable and anything unexpected: temporary, never cached.
	return outcome{kind: kindTemp, login: login, err: err}
}

// secret fetches the stored password entry for challenge-response mechanisms.
// On success the outcome is kindOK with its grant set (nothing is sent yet).
func (s *Server) secret(ctx context.Context, login, mech string) (password.Entry, outcome) {
	if s.secrets == nil {
		return password.Entry{}, fail(login, "directory cannot serve "+mech)
	}
	if login == "" || len(login) > 512 || strings.ContainsRune(login, 0) {
		return password.Entry{}, fail(login, "invalid user name")
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LookupTimeout.D())
	defer cancel()
	scheme, data, u, err := s.secrets.StoredPassword(lctx, login)
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrNotFound), errors.Is(err, directory.ErrInvalidCredentials), errors.Is(err, directory.ErrDisabled):
		return password.Entry{}, outcome{kind: kindFail, login: login, err: err}
	default:
		return password.Entry{}, outcome{kind: kindTemp, login: login, err: err}
	}
	if u == nil || !u.Enabled {
		// Checked before the exchange completes: a disabled user never gets OK.
		return password.Entry{}, outcome{kind: kindFail, login: login, err: directory.ErrDisabled}
	}
	if data == "" {
		// An account without a password cannot log in (as with PLAIN): an
		// empty secret would otherwise answer an HMAC keyed with "".
		return password.Entry{}, fail(login, "user has no password")
	}
	stored := data
	if scheme != "" {
		stored = "{" + scheme + "}" + data
	}
	e, err := password.Parse(stored, "")
	if err != nil || !e.PlaintextEquivalent(mech) {
		return password.Entry{}, fail(login, "stored password scheme cannot serve "+mech)
	}
	return e, s.accepted(login, grantFor(login, u))
}

// accepted builds the OK outcome.
func (s *Server) accepted(login string, g grant) outcome {
	return outcome{kind: kindOK, login: login, grant: g}
}
