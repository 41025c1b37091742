// Package milter puts the spam engine in front of Postfix (or Sendmail) through
// the milter protocol, using github.com/emersion/go-milter v0.5.0.
//
// Two properties of that library shape this package:
//
//   - It replaces its macro map on every macro packet, so a callback only sees the
//     macros of its own stage. Each connection keeps its own accumulated map
//     (session.macros): connection macros ({client_addr}, j, …) stay for the
//     whole connection, message macros (i, {mail_addr}, {rcpt_*}) are cleared
//     when the message ends.
//   - After any response whose Continue() is false (accept, reject, tempfail) it
//     calls Server.NewMilter again and drops the old backend, losing
//     connection-level state (client, HELO, auth) before the next message of the
//     same SMTP session. We answer the end of message with a Response whose
//     Continue() is true (finalResponse) but whose packet is the real verdict, so
//     the library keeps our per-connection backend; the session resets its own
//     message state. Postfix only ever sees the correct packets.
//
// The library negotiates milter protocol version 2: no DATA, UNKNOWN or v6
// no-reply options, which Postfix handles (it simply sends fewer events). We
// do negotiate SMFIP_NOHREPL (no reply per header field, pre-v6 and honoured
// by Postfix 3.7 at version 2, verified in the Postfix test): it removes one
// round trip per header and doubles throughput on corpus mail. Likewise
// SMFIP_HDR_LEADSPC, so header fields reach the scan byte for byte (and the
// values we add carry their own leading space).
package milter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// Scorer is what the milter needs from the spam engine; *spam.Engine
// satisfies it and tests use fakes.
type Scorer interface {
	// NewBuilder returns a builder with the engine's message limits.
	NewBuilder() *message.Builder
	Score(ctx context.Context, in *spam.Input) (spam.Verdict, error)
}

// Report describes one handled message; Options.OnMessage receives it after
// the reply was decided (tests, audit hooks).
type Report struct {
	QueueID  string
	Client   string // host[addr]
	ClientIP net.IP
	Helo     string
	From     string
	Rcpts    []string
	AuthUser string
	Size     int64
	// Macros is the accumulated macro map at end of message.
	Macros  map[string]string
	Verdict *spam.Verdict // nil when not scanned
	Action  string        // what the milter did (see dovetail_milter_messages_total)
	Reply   string        // SMTP reply sent for reject/tempfail, "" otherwise
	Err     error
	Elapsed time.Duration
}

// Options are optional collaborators.
type Options struct {
	// Outbound scores authenticated senders when Config.Authenticated is
	// "outbound"; nil uses the main scorer.
	Outbound Scorer
	// OnMessage, when set, is called once per message.
	OnMessage func(Report)
	// HeaderEdits overrides how a verdict becomes header fields; nil uses
	// SpamHeaders.
	HeaderEdits func(v spam.Verdict) []spam.Header
}

// Server is the milter daemon.
type Server struct {
	cfg     Config                 // as started: listener and macro requests
	live    atomic.Pointer[Config] // what messages use; replaced by Reload
	scorer  atomic.Pointer[scorerBox]
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	lns     []net.Listener
	conns   map[*trackedConn]struct{}
	closing atomic.Bool
	serving sync.WaitGroup
}

// New builds a server; cfg must be valid.
func New(cfg Config, scorer Scorer, log *slog.Logger, reg prometheus.Registerer, opts ...Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("milter: %w", err)
	}
	if scorer == nil {
		return nil, errors.New("milter: no scorer")
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, metrics: newMetrics(reg), conns: map[*trackedConn]struct{}{}}
	s.SetScorer(scorer)
	s.live.Store(&cfg)
	if len(opts) > 0 {
		s.opts = opts[0]
	}
	return s, nil
}

func (s *Server) config() *Config { return s.live.Load() }

// Reload applies a new configuration to the next messages. listen and
// request_macros belong to the listener and need a restart; a change there is
// reported but the rest is applied.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("milter: %w", err)
	}
	s.live.Store(&cfg)
	if cfg.Listen != s.cfg.Listen || cfg.RequestMacros != s.cfg.RequestMacros || cfg.SkipHeaderReplies != s.cfg.SkipHeaderReplies {
		return ErrRestartNeeded
	}
	return nil
}

// ErrRestartNeeded is returned by Reload when listen or request_macros
// changed; everything else was applied.
var ErrRestartNeeded = errors.New("milter: listen, request_macros and skip_header_replies changes need a restart (other settings applied)")

type scorerBox struct{ Scorer }

// SetScorer swaps the scorer (SIGHUP: a rebuilt engine with new rules). Messages
// already at end of message finish with the old one.
func (s *Server) SetScorer(sc Scorer) { s.scorer.Store(&scorerBox{sc}) }

func (s *Server) currentScorer() Scorer { return s.scorer.Load().Scorer }

// symList is what we ask Postfix to send at each stage when RequestMacros is
// on. SETSYMLIST replaces Postfix's own lists for those stages, so it repeats
// the defaults we rely on.
var symList = map[gomilter.Stage][]string{
	gomilter.StageConnect:  {"j", "_", "v", "{daemon_name}", "{client_addr}", "{client_name}", "{client_port}", "{client_ptr}"},
	gomilter.StageHelo:     {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	gomilter.StageMailFrom: {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}", "{client_addr}"},
	gomilter.StageRcptTo:   {"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
	gomilter.StageEOM:      {"i", "{auth_authen}", "{client_addr}", "{client_name}"},
}

func (s *Server) newLibServer(tl *trackingListener) *gomilter.Server {
	actions := gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine
	// SMFIP_HDR_LEADSPC: header values arrive exactly as after the colon.
	// Without it Postfix drops one space, and "Subject:foo" rebuilt as
	// "Subject: foo" breaks c=simple DKIM signatures. Postfix honours the
	// flag at any protocol version (milter8.c keeps the milter's event mask).
	srv := &gomilter.Server{Actions: actions, Protocol: gomilter.OptHeaderLeadingSpace}
	if s.cfg.SkipHeaderReplies {
		// SMFIP_NOHREPL: no round trip per header field (a message has dozens).
		srv.Protocol |= gomilter.OptNoHeaderReply
	}
	if s.cfg.RequestMacros {
		srv.Actions |= gomilter.OptSetSymList
		srv.SymList = symList
	}
	// Called once per connection from the accept loop, right after Accept in
	// the same goroutine, so the connection just accepted is the one this
	// session serves. It is never called again for that connection, because
	// every response we give reports Continue() == true (see package doc).
	srv.NewMilter = func() gomilter.Milter {
		c := tl.pending
		tl.pending = nil
		return s.newSession(c)
	}
	return srv
}

// Serve accepts MTA connections on ln until Shutdown. It returns nil after
// Shutdown and the accept error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	if s.closing.Load() {
		ln.Close()
		return nil
	}
	tl := &trackingListener{Listener: ln, srv: s}
	s.mu.Lock()
	s.lns = append(s.lns, tl)
	s.mu.Unlock()
	s.serving.Add(1)
	defer s.serving.Done()
	// We never call the library's Close (it races with Serve on its fields);
	// closing our listener ends its accept loop.
	err := s.newLibServer(tl).Serve(tl)
	if s.closing.Load() {
		return nil
	}
	return err
}

// Shutdown stops accepting, closes connections once they are between messages,
// and when ctx ends closes the rest (Postfix then applies
// milter_default_action to those messages).
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			if c.idle(50 * time.Millisecond) {
				c.shutdown()
			}
		}
		s.mu.Unlock()
		if n == 0 {
			s.serving.Wait()
			return nil
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.shutdown()
			}
			s.mu.Unlock()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// trackingListener registers every accepted connection so Shutdown can find it.
type trackingListener struct {
	net.Listener
	srv     *Server
	pending *trackedConn // handed from Accept to NewMilter (same goroutine)
}

func (l *trackingListener) Accept() (net.Conn, error) {
	// go-milter's accept loop returns on the first error, which would end the
	// milter (and the process) on a passing EMFILE or ECONNABORTED: retry
	// those here with a backoff, like the other daemons.
	c, err := daemon.Accept(l.Listener, l.srv.log, l.srv.closing.Load)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, srv: l.srv}
	tc.touch()
	l.srv.mu.Lock()
	l.srv.conns[tc] = struct{}{}
	l.srv.mu.Unlock()
	l.srv.metrics.connections.Inc()
	l.pending = tc
	return tc, nil
}

// trackedConn remembers when it last moved bytes and whether a message is in
// progress, so Shutdown closes it only between messages.
type trackedConn struct {
	net.Conn
	srv    *Server
	last   atomic.Int64 // unix nanos of the last read or write
	inMsg  atomic.Bool
	shut   atomic.Bool // closed by Shutdown: reads end with io.EOF
	closed sync.Once
	// release drops the message in progress (its spill file): go-milter
	// calls no backend method when a connection ends without ABORT. Set
	// before the connection is served.
	release func()
}

func (c *trackedConn) touch() { c.last.Store(time.Now().UnixNano()) }

func (c *trackedConn) idle(d time.Duration) bool {
	return !c.inMsg.Load() && time.Since(time.Unix(0, c.last.Load())) >= d
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.touch()
	if err != nil && c.shut.Load() {
		// go-milter logs every read error but EOF through the global logger;
		// a connection we closed on purpose is a normal end.
		err = io.EOF
	}
	return n, err
}

// shutdown closes the connection on purpose. It closes the socket only: the
// session's goroutine then fails its read and calls Close itself, so release
// never runs concurrently with a callback of the session.
func (c *trackedConn) shutdown() {
	c.shut.Store(true)
	c.Conn.Close()
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.touch()
	return n, err
}

// Close is called by go-milter, from the connection's goroutine, when it
// stops serving the connection (QUIT, EOF, a read or protocol error).
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() {
		if c.release != nil {
			c.release()
		}
		c.srv.metrics.connections.Dec()
		// Removal happens asynchronously: Close must never wait for srv.mu,
		// which Shutdown holds while it closes sockets.
		go func() {
			c.srv.mu.Lock()
			delete(c.srv.conns, c)
			c.srv.mu.Unlock()
		}()
	})
	return err
}
