// Package lmtpd is dovetail's LMTP delivery agent (RFC 2033): Postfix hands it
// messages, it finds each recipient in the directory, runs the global and personal
// Sieve scripts, quarantines spam and writes Maildir that Dovecot serves. Replies
// and Maildir layout follow Dovecot LMTP (../shared/guides/protocols.md §4).
//
// It never imports the milter or the spam engine: spam verdicts come from the
// X-Spam-* headers the milter added.
package lmtpd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/lmtpd/maildir"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the dependencies of a Server.
type Options struct {
	Config     Config
	Directory  directory.Lookup
	Store      store.Store
	Filter     Filter
	Quarantine *quarantine.Store
	Sender     Sender
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Maildir overrides the Maildir writer options (tests: failing writers).
	Maildir *maildir.Options

	// housekeepEvery overrides defaultHousekeepEvery (tests).
	housekeepEvery time.Duration
}

// Server is the LMTP server.
type Server struct {
	cfg Config // as started: listeners, greeting and limits of the LMTP server
	// live is the delivery pipeline for new transactions; Reload swaps it and
	// carries its Metrics and Quarantine over, so they stay those of New.
	live atomic.Pointer[Deliverer]
	smtp *smtp.Server
	log  *slog.Logger

	stopOnce       sync.Once
	stop           chan struct{} // ends housekeeping
	housekeepEvery time.Duration

	sessions    atomic.Int64 // open sessions on every listener (max_connections)
	lastRefusal atomic.Int64 // Unix seconds of the last refusal logged
}

// deliveryTimeout bounds the work after DATA for all recipients of one message.
const deliveryTimeout = 5 * time.Minute

// defaultHousekeepEvery is how often the quarantine's retention and size cap are
// applied while no new message triggers them.
const defaultHousekeepEvery = time.Hour

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Directory == nil {
		return nil, errors.New("lmtpd: no directory configured")
	}
	dv := NewDeliverer(o)
	s := &Server{cfg: o.Config, log: dv.Logger, stop: make(chan struct{}), housekeepEvery: o.housekeepEvery}
	if s.housekeepEvery <= 0 {
		s.housekeepEvery = defaultHousekeepEvery
	}
	s.live.Store(dv)
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.LMTP = true
	srv.Domain = dv.host
	// Rcpt enforces max_recipients from the live config, so a reload can
	// change it; go-smtp's own limit would be fixed for the process lifetime.
	srv.MaxRecipients = 0
	// One byte more than the limit: go-smtp's DATA reader (v0.25) fails once
	// the limit is used up, before it reads the end-of-data line, so a message
	// of exactly max_message_size (RFC 1870: the largest accepted) got 552.
	// readLimited enforces the limit itself and refuses a message of one byte
	// more with the same 552; Mail refuses SIZE= above the limit, and wireConn
	// corrects the SIZE keyword of LHLO to the limit.
	srv.MaxMessageBytes = int64(o.Config.MaxMessageSize) + 1
	srv.ReadTimeout = o.Config.ReadTimeout.D()
	srv.WriteTimeout = o.Config.WriteTimeout.D()
	srv.EnableSMTPUTF8 = true
	// Dovecot has no line limit and Postfix folds at lmtp_line_length_limit (998);
	// the limit only bounds a broken client, it costs no memory in DATA.
	srv.MaxLineLength = 1 << 16
	srv.ErrorLog = slogLogger{dv.Logger}
	s.smtp = srv
	return s, nil
}

// NewDeliverer builds the delivery pipeline alone (quarantine release uses it
// without a server). o.Registerer may be nil.
func NewDeliverer(o Options) *Deliverer {
	return newDeliverer(o, NewMetrics(o.Registerer))
}

// newDeliverer builds the delivery pipeline of o with the metrics m.
func newDeliverer(o Options, m *Metrics) *Deliverer {
	dv := &Deliverer{
		Config: o.Config, Directory: o.Directory, Store: o.Store, Filter: o.Filter,
		Quarantine: o.Quarantine, Sender: o.Sender, Logger: o.Logger, Metrics: m,
	}
	if o.Maildir != nil {
		dv.Writer = maildir.New(*o.Maildir)
	}
	dv.init()
	return dv
}

// Deliverer returns the delivery pipeline in use (used by quarantine release).
func (s *Server) Deliverer() *Deliverer { return s.live.Load() }

// Reload swaps in a delivery pipeline built from o (config, Sieve filter,
// sender, directory, store) for the transactions that start from now on; one
// in progress finishes with the pipeline it began with. What belongs to the
// LMTP server stays as started and needs a restart: listen, also_listen,
// hostname, max_message_size, read_timeout and write_timeout. The metrics and
// the quarantine stay too (o.Registerer and o.Quarantine are ignored), so the
// counters go on and the housekeeping has one store to look after.
func (s *Server) Reload(o Options) error {
	if o.Directory == nil {
		return errors.New("lmtpd: no directory configured")
	}
	old := s.live.Load()
	o.Config.Listen, o.Config.AlsoListen = s.cfg.Listen, s.cfg.AlsoListen
	o.Config.Hostname, o.Config.MaxMessageSize = s.cfg.Hostname, s.cfg.MaxMessageSize
	o.Config.ReadTimeout, o.Config.WriteTimeout = s.cfg.ReadTimeout, s.cfg.WriteTimeout
	if o.Logger == nil {
		o.Logger = old.Logger
	}
	o.Quarantine = old.Quarantine
	dv := newDeliverer(o, old.Metrics)
	dv.Now = old.Now
	s.live.Store(dv)
	return nil
}

// Serve accepts LMTP connections on ln (unix or TCP) until Shutdown, and on
// also_listen when that is configured. If one listener fails, both stop and the
// error is returned.
func (s *Server) Serve(ln net.Listener) error {
	lns := []net.Listener{ln}
	if s.cfg.AlsoListen.Address != "" {
		ln2, err := daemon.Listen(s.cfg.AlsoListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("also_listen: %w", err)
		}
		s.log.Info("listening", "daemon", "lmtpd", "addr", ln2.Addr().String())
		lns = append(lns, ln2)
	}
	errc := make(chan error, len(lns))
	for _, l := range lns {
		go func() { errc <- s.serve(l) }()
	}
	if q := s.live.Load().Quarantine; q != nil {
		go s.housekeep(q)
		defer s.stopOnce.Do(func() { close(s.stop) })
	}
	var first error
	for range lns {
		if err := <-errc; err != nil && first == nil {
			first = err
			s.smtp.Close() // the other listener must not serve on alone
		}
	}
	return first
}

// housekeep applies the quarantine's retention and size cap now and then every
// s.housekeepEvery, so old messages go even when no new spam arrives.
func (s *Server) housekeep(q *quarantine.Store) {
	t := time.NewTicker(s.housekeepEvery)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if n, err := q.Recover(ctx); err != nil {
			s.log.Warn("quarantine housekeeping", "error", err)
		} else if n > 0 {
			s.log.Warn("quarantine housekeeping: messages without an index entry indexed again", "recovered", n)
		}
		if n, err := q.Enforce(ctx); err != nil {
			s.log.Warn("quarantine housekeeping", "error", err)
		} else if n > 0 {
			s.log.Info("quarantine housekeeping", "removed", n)
		}
		cancel()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Server) serve(ln net.Listener) error {
	limited := &limitListener{Listener: ln, hostname: s.live.Load().host, open: &s.sessions,
		max: func() int { return s.live.Load().Config.MaxConnections }, refused: s.refused421}
	err := s.smtp.Serve(&wireListener{Listener: limited, maxSize: int64(s.cfg.MaxMessageSize)})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// refused421 counts a connection refused for max_connections, and logs it at
// most every ten seconds (a flood of them must not flood the log too).
func (s *Server) refused421() {
	dv := s.live.Load()
	dv.Metrics.Refused.Inc()
	now := time.Now().Unix()
	if last := s.lastRefusal.Load(); now-last >= 10 && s.lastRefusal.CompareAndSwap(last, now) {
		s.log.Warn("lmtpd connections refused with 421: max_connections sessions open (dovetail_lmtpd_connections_refused_total counts them)",
			"max_connections", dv.Config.MaxConnections)
	}
}

// Shutdown stops accepting and waits for sessions in progress (a delivery that is
// writing finishes; ctx bounds the wait), then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.smtp.Close()
	}
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) {
	l.l.Error("lmtp", "msg", fmt.Sprintf(format, v...))
}
func (l slogLogger) Println(v ...any) { l.l.Error("lmtp", "msg", fmt.Sprint(v...)) }

// session is one LMTP connection's transaction state.
type session struct {
	s    *Server
	id   string
	helo string
	ip   string
	// conn is the client's connection (nil if it is not a wireConn: tests that
	// serve sessions on a listener of their own).
	conn *wireConn

	// mu guards the transaction state below: for BDAT, go-smtp runs LMTPData in
	// a goroutine of its own, which is still ending (the pipe closed with
	// ErrDataReset) while RSET, a new MAIL or the disconnect reset the session.
	mu    sync.Mutex
	n     int // transactions, for ids like Dovecot's "<session>:R<n>"
	from  string
	size  int64 // MAIL FROM's SIZE= (0: none), to size the DATA buffer
	rcpts []Recipient
	dv    *Deliverer // the transaction's pipeline, taken at MAIL (see Reload)
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	var b [12]byte
	rand.Read(b[:])
	s.live.Load().Metrics.Sessions.Inc()
	ss := &session{s: s, id: base64.RawStdEncoding.EncodeToString(b[:]), helo: c.Hostname()}
	ss.conn, _ = c.Conn().(*wireConn)
	if ta, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		ss.ip = ta.IP.String()
	}
	return ss, nil
}

func (ss *session) Reset() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.from = ""
	ss.size = 0
	ss.rcpts = nil
	ss.dv = nil
}

func (ss *session) Logout() error {
	ss.s.live.Load().Metrics.Sessions.Dec()
	return nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if opts != nil && opts.Size > 0 && opts.Size > int64(ss.s.cfg.MaxMessageSize) {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds fixed maximum message size"}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.from = from
	ss.size = 0
	if opts != nil {
		ss.size = opts.Size
	}
	ss.rcpts = nil
	ss.dv = ss.s.live.Load()
	return nil
}

// Rcpt resolves the recipient now, so unknown and disabled users get their 550 at
// RCPT time like Dovecot (Postfix then bounces just that recipient).
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.mu.Lock()
	dv, from, n := ss.dv, ss.from, len(ss.rcpts)
	ss.mu.Unlock()
	if max := dv.Config.MaxRecipients; max > 0 && n >= max {
		// go-smtp's reply for its own limit, which is off (see New).
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: fmt.Sprintf("Maximum limit of %v recipients reached", max)}
	}
	// The directory has its own timeouts; this bounds a lookup that hangs anyway,
	// well inside Postfix's lmtp_rcpt_timeout (5 min).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := dv.Resolve(ctx, to)
	if err != nil {
		rep := dv.replyFor(to, err)
		ss.s.refused("rcpt refused", ss.id, from, to, err, rep)
		return rep
	}
	ss.mu.Lock()
	ss.rcpts = append(ss.rcpts, rc)
	ss.mu.Unlock()
	return nil
}

// Resolve strips +detail (any character of recipient_delimiter) and looks the
// user up; unknown and disabled users come back as directory.ErrNotFound/ErrDisabled.
func (d *Deliverer) Resolve(ctx context.Context, to string) (Recipient, error) {
	if to == "" {
		return Recipient{}, ErrEmptyRecipient
	}
	local, domain, ok := strings.Cut(to, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(to, " \t\r\n\x00") || len(to) > 320 {
		return Recipient{}, fmt.Errorf("%w: %q", ErrBadAddress, to)
	}
	detail := ""
	if delim := d.Config.RecipientDelimiter; delim != "" {
		if i := strings.IndexAny(local, delim); i > 0 {
			local, detail = local[:i], local[i+1:]
		}
	}
	u, err := d.Directory.LookupAddress(ctx, local+"@"+strings.ToLower(domain))
	if err != nil {
		return Recipient{}, err
	}
	if !u.Enabled {
		return Recipient{}, fmt.Errorf("%w: %s", directory.ErrDisabled, u.Login)
	}
	return Recipient{Addr: to, User: u, Detail: detail}, nil
}

// Data is only used if go-smtp ever calls it instead of LMTPData.
func (ss *session) Data(r io.Reader) error {
	var first error
	ss.LMTPData(r, statusFunc(func(_ string, err error) {
		var se *smtp.SMTPError
		if first == nil && err != nil && !(errors.As(err, &se) && se.Code/100 == 2) {
			first = err
		}
	}))
	return first
}

type statusFunc func(string, error)

func (f statusFunc) SetStatus(r string, err error) { f(r, err) }

// LMTPData reads the message and answers per recipient, in RCPT order, each as soon
// as its copy is durable.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	// This transaction's state, taken once: a Reset while the message is read
	// (an abandoned BDAT) must not change what this call answers for.
	ss.mu.Lock()
	ss.n++
	n, from, size, rcpts, dv := ss.n, ss.from, ss.size, ss.rcpts, ss.dv
	ss.mu.Unlock()
	if dv == nil {
		// Reset before go-smtp's BDAT goroutine got here: the transaction is gone
		// and go-smtp answers no one for it.
		return replyFor("", smtp.ErrDataReset, false)
	}
	txID := ss.id
	if n > 1 {
		txID = fmt.Sprintf("%s:R%d", ss.id, n)
	}
	data, err := readLimited(r, int64(ss.s.cfg.MaxMessageSize), size)
	if err == nil && ss.conn != nil && ss.conn.readEnded() {
		// A last BDAT chunk cut short by the disconnect (see wireConn): the
		// client saw no reply and sends the whole message again.
		data, err = nil, errCutShort
	}
	if err != nil {
		// Too large (go-smtp's 552 5.3.4), or the client vanished mid-DATA: nothing
		// has been written anywhere.
		rep := dv.replyFor("", err)
		for _, rc := range rcpts {
			ss.s.refused("delivery", txID, from, rc.Addr, err, rep)
			status.SetStatus(rc.Addr, rep)
		}
		return rep
	}
	d := &Delivery{From: from, Recipients: rcpts, Data: data, SessionID: txID, Helo: ss.helo, RemoteIP: ss.ip}
	// Bounded well inside Postfix's lmtp_data_done_timeout (600s): a hanging store,
	// script or submission tempfails its recipient instead of the whole session.
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	dv.Deliver(ctx, d, func(i int, err error) {
		rc := rcpts[i]
		if err == nil {
			status.SetStatus(rc.Addr, &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: txID + " Saved"})
			return
		}
		status.SetStatus(rc.Addr, dv.replyFor(rc.Addr, err))
	})
	return nil
}

// refused logs and counts a recipient answered with an error before any delivery
// was attempted (unknown user at RCPT, message too large, client gone in DATA):
// every recipient gets its log line and its result in the metrics.
func (s *Server) refused(msg, session, from, rcpt string, err error, rep *smtp.SMTPError) {
	result := "tempfail"
	if rep.Code >= 500 {
		result = "rejected"
	}
	s.live.Load().Metrics.Deliveries.WithLabelValues(result).Inc()
	s.log.Info(msg, "session", session, "rcpt", rcpt, "from", from, "result", result,
		"reply", fmt.Sprintf("%d %d.%d.%d %s", rep.Code, rep.EnhancedCode[0], rep.EnhancedCode[1], rep.EnhancedCode[2], rep.Message),
		"error", err.Error())
}

// readLimited reads all of r, failing with go-smtp's ErrDataTooLarge once more
// than limit bytes came (counted as received, before each read), and returns the
// message with its line ends already normalised to LF as maildir.Normalize
// does: delivery works on this one buffer, and normalising afterwards would
// copy the whole message a second time.
//
// The buffer is sized from sizeHint (MAIL FROM's SIZE=, which Postfix takes
// from its queue file: 1–3% more than the message with LF line ends), but only
// as far as the client backs it up: SIZE= is the client's word, and believing
// it at once would let one that announces max_message_size and sends a few
// kilobytes hold that much memory per transaction. So the message is read in
// chunks that double what came so far until 1/hintTrust of the announced size
// is in; then one buffer for the whole of it is made and the little read so
// far copied in. An honest message costs about 1+1/hintTrust times its size
// and one copy of its first part; a client that lies gets at most hintTrust
// times what it actually sent. Without a (right) hint, the rest is read in
// chunks that grow with the message and are joined once at the end: growing
// one slice instead (append) allocates about five times the message.
func readLimited(r io.Reader, limit, sizeHint int64) ([]byte, error) {
	const firstChunk = 16 << 10
	want := 0 // the announced size (with a margin) not yet allocated; 0: none
	if sizeHint > 0 {
		// A margin for a client that counts a little less than it sends; more
		// than limit+1 bytes are never kept.
		want = int(min(sizeHint+sizeHint>>6+1<<10, limit+1))
	}
	// need is how much must have come before want is believed.
	need := (want + hintTrust - 1) / hintTrust
	first := firstChunk
	if want > 0 {
		first = min(want, firstChunk)
	}
	buf := make([]byte, 0, first)
	var full [][]byte // chunks filled before buf
	var raw, kept int64
	cr := false // the last byte read was a CR, stored as LF: an LF next is its CRLF's
	for {
		if raw > limit {
			return nil, smtp.ErrDataTooLarge
		}
		if len(buf) == cap(buf) {
			switch k := int(kept); {
			case k < want && k >= need:
				// Enough came to believe SIZE=: room for the whole message.
				buf = joinChunks(full, buf, want)
				full, want = nil, 0
			case k < want:
				// Not yet: double what came, up to need.
				full = append(full, buf)
				buf = make([]byte, 0, max(firstChunk, min(k, need-k)))
			default:
				// No hint, or one that proved too small.
				full = append(full, buf)
				buf = make([]byte, 0, max(firstChunk, k/4))
			}
		}
		start := len(buf)
		n, err := r.Read(buf[start:cap(buf)])
		raw += int64(n)
		buf, cr = normalizeLF(buf[:start+n], start, cr)
		kept += int64(len(buf) - start)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(full) == 0 {
		return buf, nil
	}
	if len(buf) == 0 && len(full) == 1 {
		return full[0], nil // the last read only found the end
	}
	return joinChunks(full, buf, int(kept)), nil
}

// hintTrust bounds how far readLimited believes SIZE=: the whole announced
// size is allocated once 1/hintTrust of it has come.
const hintTrust = 8

// joinChunks returns the chunks and then last in one new buffer of capacity
// size (at least their length).
func joinChunks(chunks [][]byte, last []byte, size int) []byte {
	n := len(last)
	for _, c := range chunks {
		n += len(c)
	}
	out := make([]byte, 0, max(size, n))
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, last...)
}

// normalizeLF turns the line ends in b[from:] into LF in place (CRLF and a lone
// CR each become one LF, maildir.Normalize's rule) and returns the shortened b.
// cr says the byte read before b[from] was a CR (stored as LF): an LF at
// b[from] is then the rest of that CRLF, split between two reads, and is
// dropped. The returned cr is that state for the next call.
func normalizeLF(b []byte, from int, cr bool) ([]byte, bool) {
	if from == len(b) {
		return b, cr
	}
	r, w := from, from
	if cr && b[r] == '\n' {
		r++
	}
	for r < len(b) {
		i := bytes.IndexByte(b[r:], '\r')
		if i < 0 {
			w += copy(b[w:], b[r:])
			return b[:w], false
		}
		w += copy(b[w:], b[r:r+i])
		b[w] = '\n'
		w++
		r += i + 1
		if r == len(b) {
			return b[:w], true
		}
		if b[r] == '\n' {
			r++
		}
	}
	return b[:w], false
}
