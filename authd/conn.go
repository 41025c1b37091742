package authd

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// writeTimeout bounds one reply write; Postfix reads with a 10 s timeout.
const writeTimeout = 10 * time.Second

// conn is one client connection (Postfix keeps one per smtpd process and sends
// its requests one after the other; other clients may interleave requests).
type conn struct {
	s      *Server
	nc     net.Conn
	cuid   uint32
	r      *bufio.Reader
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	work   sync.WaitGroup // request steps running in goroutines

	wmu sync.Mutex
	w   *bufio.Writer

	mu          sync.Mutex
	reqs        map[uint32]*request
	busy        int // requests whose step is running
	versionSeen bool
	minor       int
}

// request is one AUTH exchange.
type request struct {
	a     authLine
	mech  mechanism
	start time.Time
	// stepStart is when the client's data for the current step arrived; a
	// failure's delay counts from it (see finish).
	stepStart time.Time
	busy      bool
	timer     *time.Timer
	// cancelled: the client sent CANCEL while a step was running; its result is
	// dropped (the id may already be reused).
	cancelled bool
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{
		s: s, nc: nc, cuid: s.cuid.Add(1),
		r:    bufio.NewReaderSize(nc, maxLine+1),
		w:    bufio.NewWriterSize(nc, 4096),
		reqs: map[uint32]*request{},
	}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	return c
}

func (c *conn) serve() {
	defer func() {
		c.close()
		c.work.Wait()
		c.mu.Lock()
		for _, r := range c.reqs {
			if r.timer != nil {
				r.timer.Stop()
			}
		}
		c.mu.Unlock()
	}()
	// Like Dovecot 2.3, the whole handshake is sent at once; Postfix needs the
	// MECH lines before SPID (it uses MECH-before-SPID to detect a wrong socket).
	if !c.write(c.handshake()) {
		return
	}
	for {
		c.nc.SetReadDeadline(c.readDeadline())
		raw, err := c.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				c.protocolError(fmt.Errorf("%w: line longer than %d bytes", errProtocol, maxLine))
			}
			return
		}
		line := string(raw[:len(raw)-1])
		if err := c.handle(line); err != nil {
			c.protocolError(err)
			return
		}
	}
}

// handshakeTimeout bounds the wait for the client's VERSION line: Postfix
// sends it as soon as it connects, so a silent peer is not a client.
const handshakeTimeout = 30 * time.Second

// readDeadline is the deadline for the next line: the handshake's, then the
// idle timeout's if one is set.
func (c *conn) readDeadline() time.Time {
	if !c.versionSeen {
		return time.Now().Add(handshakeTimeout)
	}
	if d := c.s.cfg.IdleTimeout.D(); d > 0 {
		return time.Now().Add(d)
	}
	return time.Time{}
}

func (c *conn) handshake() string {
	var b strings.Builder
	fmt.Fprintf(&b, "VERSION\t%d\t%d\n", protoMajor, protoMinor)
	for _, m := range c.s.mechs {
		fmt.Fprintf(&b, "MECH\t%s\t%s\n", m, mechFlags[m])
	}
	var cookie [16]byte
	rand.Read(cookie[:])
	fmt.Fprintf(&b, "SPID\t%d\nCUID\t%d\nCOOKIE\t%s\nDONE\n", os.Getpid(), c.cuid, hex.EncodeToString(cookie[:]))
	return b.String()
}

func (c *conn) protocolError(err error) {
	c.s.m.protoErrors.Inc()
	c.s.log.Warn("auth client protocol error; disconnecting", "remote", remoteAddr(c.nc), "err", err)
}

func remoteAddr(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix"
}

// handle processes one line; an error closes the connection (Dovecot treats
// these as client bugs and disconnects).
func (c *conn) handle(line string) error {
	cmd, args := splitLine(line)
	if !c.versionSeen {
		if cmd != "VERSION" || len(args) < 2 {
			return fmt.Errorf("%w: expected VERSION, got %.40q", errProtocol, line)
		}
		if args[0] != strconv.Itoa(protoMajor) {
			return fmt.Errorf("%w: unsupported protocol major version %.10q", errProtocol, args[0])
		}
		c.minor, _ = strconv.Atoi(args[1])
		c.versionSeen = true
		return nil
	}
	switch cmd {
	case "CPID":
		return nil
	case "AUTH":
		return c.auth(args)
	case "CONT":
		return c.cont(args)
	case "CANCEL":
		if len(args) < 1 {
			return fmt.Errorf("%w: CANCEL without id", errProtocol)
		}
		id, err := parseID(args[0])
		if err != nil {
			return err
		}
		c.mu.Lock()
		if r := c.reqs[id]; r != nil {
			r.cancelled = true
			c.remove(r)
		}
		c.mu.Unlock()
		return nil
	}
	return fmt.Errorf("%w: unknown command %.20q", errProtocol, cmd)
}

func (c *conn) auth(args []string) error {
	a, err := parseAuth(args, c.minor)
	if err != nil {
		return err
	}
	if !c.s.offered[a.mech] {
		return fmt.Errorf("%w: unsupported mechanism %.30q", errProtocol, a.mech)
	}
	c.mu.Lock()
	if _, dup := c.reqs[a.id]; dup {
		c.mu.Unlock()
		return fmt.Errorf("%w: duplicate request id %d", errProtocol, a.id)
	}
	if len(c.reqs) >= c.s.cfg.MaxPending && !c.evictWaiting() {
		c.mu.Unlock()
		c.write(fmt.Sprintf("FAIL\t%d\treason=Too many concurrent authentication requests\n", a.id))
		return nil
	}
	now := time.Now()
	r := &request{a: a, mech: c.s.newMech(a.mech), start: now, stepStart: now, busy: true}
	c.reqs[a.id] = r
	c.busy++
	c.mu.Unlock()
	var data []byte
	if a.hasResp {
		if data, err = decodeB64(a.resp); err != nil {
			c.finish(r, outcome{kind: kindFail, code: "invalid_base64", reason: "Invalid base64 data in initial response", err: err})
			return nil
		}
	}
	c.step(r, data, a.hasResp)
	return nil
}

func (c *conn) cont(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("%w: CONT without id", errProtocol)
	}
	id, err := parseID(args[0])
	if err != nil {
		return err
	}
	data := ""
	if len(args) > 1 {
		data = args[1]
	}
	c.mu.Lock()
	r := c.reqs[id]
	if r == nil {
		c.mu.Unlock()
		// Dovecot's answer to a CONT for a request it no longer has.
		c.write(fmt.Sprintf("FAIL\t%d\treason=Authentication request timed out\n", id))
		return nil
	}
	if r.busy {
		c.mu.Unlock()
		return fmt.Errorf("%w: CONT %d while the previous step is still running", errProtocol, id)
	}
	r.busy = true
	r.stepStart = time.Now()
	c.busy++
	if r.timer != nil {
		r.timer.Stop()
	}
	c.mu.Unlock()
	decoded, err := decodeB64(data)
	if err != nil {
		c.finish(r, outcome{kind: kindFail, code: "invalid_base64", reason: "Invalid base64 data in continued response", err: err})
		return nil
	}
	c.step(r, decoded, true)
	return nil
}

// step runs one mechanism step. When it is the only request of the connection
// in progress — always so with Postfix, which waits for each reply — it runs on
// the reader goroutine: saving the goroutine hand-off is a good part of a cached
// login's latency. Otherwise it runs in its own goroutine. So a client that
// interleaves requests may see a later request wait behind a directory call
// that started alone (bounded by lookup_timeout), never behind a failure
// penalty (finish sends delayed FAILs from a goroutine).
func (c *conn) step(r *request, data []byte, has bool) {
	c.mu.Lock()
	alone := c.busy == 1 && len(c.reqs) == 1
	c.mu.Unlock()
	if alone {
		c.finish(r, r.mech.step(c.ctx, data, has))
		return
	}
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		c.finish(r, r.mech.step(c.ctx, data, has))
	}()
}

// finish sends the reply for an outcome.
func (c *conn) finish(r *request, o outcome) {
	id := r.a.id
	if o.kind == kindOK && o.grant.nets != "" {
		// After the password was checked, as Dovecot does: a wrong password
		// from a refused network is still a plain failure.
		if err := checkNets(o.grant.nets, r.a.rip); err != nil {
			o = outcome{kind: kindFail, login: o.login, cached: o.cached, err: err}
		}
	}
	switch o.kind {
	case kindCont:
		c.mu.Lock()
		if r.cancelled {
			c.mu.Unlock()
			return
		}
		// Not busy before the challenge is written: the client may answer at once.
		r.busy = false
		c.busy--
		r.timer = time.AfterFunc(c.s.cfg.RequestTimeout.D(), func() { c.expire(r) })
		c.mu.Unlock()
		c.write("CONT\t" + strconv.FormatUint(uint64(id), 10) + "\t" + base64.StdEncoding.EncodeToString(o.challenge) + "\n")
		return
	case kindOK:
		c.s.pen().success(penaltyKey(r.a.rip, o.login))
		if !c.done(r, o, "ok") {
			return
		}
		c.write("OK\t" + strconv.FormatUint(uint64(id), 10) + "\tuser=" + escape(o.grant.user) + "\n")
		return
	case kindFail:
		if !r.a.noPenalty {
			// The delay counts from the arrival of the step's data, not from
			// the end of the check: the check costs a stored hash or an LDAP
			// bind only for a user that exists, and a FAIL that came that
			// much later would tell an attacker which accounts do.
			if d := c.s.pen().fail(penaltyKey(r.a.rip, o.login)) - time.Since(r.stepStart); d > 0 {
				c.s.m.penalties.Inc()
				// The delayed reply is sent from its own goroutine: a penalty must
				// not stall the connection's reader (and so the client's other
				// requests) even when the step ran inline. The request stays busy
				// until then, so requests arriving meanwhile run concurrently.
				c.work.Add(1)
				go func() {
					defer c.work.Done()
					t := time.NewTimer(d)
					select {
					case <-t.C:
					case <-c.ctx.Done():
						t.Stop()
					}
					c.sendFail(r, o)
				}()
				return
			}
		}
		c.sendFail(r, o)
		return
	}
	// kindTemp: the directory is unavailable.
	if !c.done(r, o, "tempfail") {
		return
	}
	if c.s.cfg.OnUnavailable == "fail" {
		c.write(fmt.Sprintf("FAIL\t%d\tcode=temp_fail\treason=Temporary authentication failure\n", id))
		return
	}
	// Postfix maps every FAIL to 535; only a lost connection gives the client
	// the temporary 454 4.7.0 it should retry after.
	c.close()
}

// sendFail completes a failed request with its FAIL line.
func (c *conn) sendFail(r *request, o outcome) {
	if !c.done(r, o, "fail") {
		return
	}
	var b strings.Builder
	b.WriteString("FAIL\t")
	b.WriteString(strconv.FormatUint(uint64(r.a.id), 10))
	if o.login != "" {
		b.WriteString("\tuser=" + escape(o.login))
	}
	if o.code != "" {
		b.WriteString("\tcode=" + o.code)
	}
	if o.reason != "" {
		b.WriteString("\treason=" + escape(o.reason))
	}
	b.WriteByte('\n')
	c.write(b.String())
}

// done removes the request and records the attempt: one log line, metrics.
// It returns false when the request was cancelled (no reply must be sent).
func (c *conn) done(r *request, o outcome, result string) bool {
	c.mu.Lock()
	cancelled := r.cancelled
	c.remove(r)
	c.mu.Unlock()
	if cancelled {
		result = "cancelled"
	}
	dur := time.Since(r.start)
	c.s.m.attempts.WithLabelValues(r.a.mech, result).Inc()
	c.s.m.duration.WithLabelValues(r.a.mech).Observe(dur.Seconds())
	lvl := slog.LevelInfo
	if result == "tempfail" {
		lvl = slog.LevelWarn
	}
	if !c.s.log.Enabled(c.ctx, lvl) {
		return !cancelled
	}
	attrs := []slog.Attr{
		slog.String("mechanism", r.a.mech), slog.String("user", o.login), slog.String("rip", r.a.rip),
		slog.String("service", r.a.service), slog.String("result", result), slog.Duration("duration", dur),
		slog.Uint64("id", uint64(r.a.id)), slog.Uint64("cuid", uint64(c.cuid)),
	}
	if o.cached {
		attrs = append(attrs, slog.Bool("cached", true))
	}
	if o.err != nil && result != "ok" {
		attrs = append(attrs, slog.String("reason", o.err.Error()))
	}
	c.s.log.LogAttrs(context.Background(), lvl, "auth", attrs...)
	return !cancelled
}

// remove drops r (c.mu held).
func (c *conn) remove(r *request) {
	if c.reqs[r.a.id] != r {
		return
	}
	if r.busy {
		c.busy--
		r.busy = false
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	delete(c.reqs, r.a.id)
}

// expire drops a request whose client never sent the next CONT (Postfix does
// not tell us when the SMTP client aborts with "*").
func (c *conn) expire(r *request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reqs[r.a.id] == r && !r.busy {
		c.remove(r)
		c.s.m.attempts.WithLabelValues(r.a.mech, "abandoned").Inc()
	}
}

// evictWaiting makes room for a new request by dropping the oldest one that
// waits for a CONT, as if it had expired. Postfix keeps one connection per
// smtpd process and never says when an SMTP client gave up mid-exchange, so
// such requests pile up until request_timeout; max_pending must bound what
// runs, not lock everybody else on the connection out meanwhile. It reports
// false when every request is running. c.mu is held.
func (c *conn) evictWaiting() bool {
	var oldest *request
	for _, r := range c.reqs {
		if !r.busy && (oldest == nil || r.start.Before(oldest.start)) {
			oldest = r
		}
	}
	if oldest == nil {
		return false
	}
	c.remove(oldest)
	c.s.m.attempts.WithLabelValues(oldest.a.mech, "abandoned").Inc()
	return true
}

// write sends one reply; a failed write closes the connection.
func (c *conn) write(s string) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.w.WriteString(s); err != nil {
		c.close()
		return false
	}
	if err := c.w.Flush(); err != nil {
		c.close()
		return false
	}
	return true
}

func (c *conn) close() {
	c.once.Do(func() {
		c.cancel()
		c.nc.Close()
	})
}

// closeIfIdle closes the connection when no request step is running.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	idle := c.busy == 0
	c.mu.Unlock()
	if idle {
		c.close()
	}
}
