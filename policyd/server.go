package policyd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("policyd: server closed")

// Server is the policy daemon: it accepts Postfix policy connections and answers
// each request with the current engine (swapped atomically by Reload).
type Server struct {
	deps Deps
	log  *slog.Logger
	m    *metrics
	eng  atomic.Pointer[engine]

	baseCtx    context.Context // cancelled when Shutdown gives up waiting
	cancelBase context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool
	wg        sync.WaitGroup
}

// New validates cfg, builds the checks and returns a server ready to Serve.
func New(cfg Config, deps Deps) (*Server, error) {
	log := deps.Log
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("policyd: metrics: %w", err)
	}
	e, err := build(cfg, deps, log, m)
	if err != nil {
		return nil, err
	}
	s := &Server{deps: deps, log: log, m: m, listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	s.eng.Store(e)
	return s, nil
}

// Reload builds a new engine from cfg and swaps it in; on any error the running
// configuration stays. Requests in flight finish with the engine they started on.
func (s *Server) Reload(cfg Config) error {
	e, err := build(cfg, s.deps, s.log, s.m)
	if err != nil {
		s.m.reloads.WithLabelValues("failed").Inc()
		return err
	}
	old := s.eng.Swap(e)
	old.close()
	s.m.reloads.WithLabelValues("ok").Inc()
	s.log.Info("policyd configuration reloaded", "checks", checkNames(e))
	return nil
}

func checkNames(e *engine) []string {
	out := make([]string, len(e.checks))
	for i, c := range e.checks {
		out[i] = c.name()
	}
	return out
}

// Serve accepts connections on ln until Shutdown; it returns ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	s.log.Info("policyd serving", "addr", ln.Addr().String(), "checks", checkNames(s.eng.Load()))
	for {
		nc, err := daemon.Accept(ln, s.log, s.isClosing)
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			return err
		}
		c := &conn{nc: nc}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if len(s.conns) >= s.eng.Load().cfg.MaxConnections {
			s.mu.Unlock()
			s.m.rejectedConns.Inc()
			s.log.Warn("policyd connection refused: max_connections reached", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// checkTime is the clock the checks see for a request read at start:
// Deps.Now, or start itself (one clock reading serves both).
func (s *Server) checkTime(start time.Time) time.Time {
	if s.deps.Now != nil {
		return s.deps.Now()
	}
	return start
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops accepting, closes idle connections at once and lets requests in
// flight finish; when ctx ends first it cancels their checks and closes
// everything.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for c := range s.conns {
			c.closeIfIdle()
		}
		s.mu.Unlock()
		select {
		case <-done:
			s.eng.Load().close()
			return nil
		case <-ctx.Done():
			s.cancelBase()
			s.mu.Lock()
			for c := range s.conns {
				c.nc.Close()
			}
			s.mu.Unlock()
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// conn is one policy connection.
type conn struct {
	nc      net.Conn
	mu      sync.Mutex
	busy    bool // a request is being read or answered
	closing bool
}

// begin marks the start of a request; false means the server is shutting down.
func (c *conn) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = !c.closing
	return !c.closing
}

// end marks a request done; false means the connection should close now.
func (c *conn) end() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	return !c.closing
}

// closeIfIdle wakes a connection blocked waiting for its next request; a busy
// one notices closing after its reply.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	if !c.busy {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

func (s *Server) serveConn(c *conn) {
	s.m.connections.Inc()
	remote := c.nc.RemoteAddr().String()
	defer func() {
		if r := recover(); r != nil {
			// Checks recover their own panics; this catches bugs in the protocol
			// code so one connection cannot take the daemon down.
			s.log.Error("policyd connection panicked", "remote", remote, "panic", fmt.Sprint(r))
		}
		c.nc.Close()
		s.m.connections.Dec()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	br := bufio.NewReaderSize(c.nc, 4096)
	bw := bufio.NewWriterSize(c.nc, 512)
	rd := NewReader(br, 0, 0)
	tx := &txn{req: new(Request), conn: &connState{}} // reused: one allocation per connection, not per request
	dl := deadlines{nc: c.nc}
	last := time.Now() // the end of the previous reply: the idle wait starts there
	for {
		e := s.eng.Load()
		dl.read(last, e.cfg.IdleTimeout.D())
		if _, err := br.Peek(1); err != nil {
			if !errors.Is(err, io.EOF) && !c.isClosing() {
				s.log.Debug("policyd connection closed", "remote", remote, "reason", err.Error())
			}
			return
		}
		if !c.begin() {
			return
		}
		e = s.eng.Load()
		rd.maxLine, rd.maxAttributes = int(e.cfg.MaxLineLength), e.cfg.MaxAttributes
		if !rd.requestBuffered() {
			// Reading will wait for the peer: bound it. (A request already
			// buffered whole, the common case, is read without the socket.)
			dl.read(time.Now(), e.cfg.ReadTimeout.D())
		}
		err := rd.Read(tx.req)
		start := time.Now()
		tx.now = s.checkTime(start)
		var d decision
		if err == nil {
			ctx := newRequestContext(s.baseCtx, start.Add(e.cfg.RequestTimeout.D()))
			d = e.decide(ctx, tx)
			ctx.release()
		} else if pe := (*ProtocolError)(nil); errors.As(err, &pe) && !pe.Fatal {
			s.m.protoErrors.WithLabelValues("answered").Inc()
			d = decision{action: Action{Verb: VerbDeferIfPermit, Text: "4.5.2 Malformed policy request"}, check: "protocol", reason: pe.Error()}
			s.log.Warn("policyd malformed request answered with a temporary action", "remote", remote, "err", pe.Error())
		} else {
			kind := "fatal"
			if !errors.As(err, &pe) {
				kind = "read"
			}
			s.m.protoErrors.WithLabelValues(kind).Inc()
			s.log.Warn("policyd closing connection", "remote", remote, "err", err.Error())
			return
		}
		act := d.action.String()
		// From now, not start: the checks may have taken longer than
		// write_timeout, which bounds writing the reply alone.
		dl.write(time.Now(), e.cfg.WriteTimeout.D())
		bw.WriteString("action=")
		bw.WriteString(act)
		bw.WriteString("\n\n")
		if err := bw.Flush(); err != nil {
			s.log.Warn("policyd reply failed, closing connection", "remote", remote, "err", err.Error())
			return
		}
		end := time.Now()
		last = end
		took := end.Sub(start)
		s.m.latency.Observe(took.Seconds())
		if err == nil {
			e.cm.request(d.idx, d.action.Label())
			e.logDecision(tx, d, act, end, took)
		} else {
			s.m.requests.WithLabelValues(checkLabel(d.check), d.action.Label()).Inc()
		}
		if !c.end() {
			return
		}
	}
}

// deadlines sets a connection's read and write deadlines, skipping a change
// that would only move one later by less than a sixteenth of its timeout (at
// most a second): each setting is a runtime timer change under the socket's
// lock, and policyd made three per request. A timeout may so end up to that
// much shorter, never longer; a deadline that must come sooner (idle to read
// timeout) is always set.
type deadlines struct {
	nc       net.Conn
	rd, wr   time.Time // as last set; zero: never
	rdT, wrT time.Duration
}

func (d *deadlines) read(now time.Time, timeout time.Duration) {
	if t := now.Add(timeout); rearm(d.rd, t, timeout, d.rdT) {
		d.rd, d.rdT = t, timeout
		_ = d.nc.SetReadDeadline(t)
	}
}

func (d *deadlines) write(now time.Time, timeout time.Duration) {
	if t := now.Add(timeout); rearm(d.wr, t, timeout, d.wrT) {
		d.wr, d.wrT = t, timeout
		_ = d.nc.SetWriteDeadline(t)
	}
}

// rearm says whether a deadline set at cur (for a timeout of curT) must move to t.
func rearm(cur, t time.Time, timeout, curT time.Duration) bool {
	if cur.IsZero() || t.Before(cur) || timeout != curT {
		return true
	}
	return t.Sub(cur) >= min(timeout/16, time.Second)
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

func checkLabel(c string) string {
	if c == "" {
		return "none"
	}
	return c
}
