package policyd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// check is one policy check. eval returns the check's verdict; an error means the
// check could not decide (the engine turns it into the fail mode or a temporary
// action, never a rejection).
type check interface {
	name() string
	eval(ctx context.Context, tx *txn) (verdict, error)
}

// verdict is a check's answer. A DUNNO verdict with stop set ends the evaluation
// (an allowlist hit); any Final action ends it too.
type verdict struct {
	action Action
	reason string
	stop   bool
	// note is logged with the decision whichever check decides (e.g. DNS
	// lookups that failed, which made this check's "no objection" partial).
	note string
}

var pass = verdict{action: Dunno}

// connState is what a connection remembers between its requests. Postfix sends
// every request of one SMTP session over the same policy connection, so the
// per-transaction memory (message counted, SPF result) lives here.
type connState struct {
	// countedInstance is the transaction whose message the rate limits counted.
	countedInstance string
	// refused is the rate-limit refusal of countedInstance's message, repeated
	// for its later recipients (the message was counted only once).
	refused *verdict
	// headerInstance is the transaction whose message got greylisting's
	// X-Greylist header (once per message).
	headerInstance string
	// spf memoises one SPF evaluation per transaction/sender/client.
	spfKey    string
	spfResult spfOutcome
}

// reader is a check whose first store access reads keys it can name before it
// runs (greylisting: the client's AWL entry and the triplet).
type reader interface {
	check
	// readKeys returns the keys eval will read first for tx, or nil when it
	// will not go straight to the store (an exempt client, SPF asked first).
	readKeys(tx *txn) []string
}

// txn is one request being evaluated.
type txn struct {
	req  *Request
	conn *connState
	now  time.Time
	// next is the check after the running one when that one is a reader: the
	// running check's last store call may carry next's reads (one round trip
	// instead of two where the store is a store.ReadAheader), kept in ahead
	// for next. Reading ahead is only ever a read, so it changes nothing when
	// next does not run or does not use it.
	next  reader
	ahead readAhead
	// grey is greylisting's view of the request, worked out once (readKeys
	// and eval share it). next, ahead and grey are per request: decide
	// clears them (the server reuses one txn per connection).
	grey greyPlan
}

// readAhead holds values read for a reader.
type readAhead struct {
	by   reader
	vals [][]byte
}

// aheadKeys are the keys the next check will read, for the running check's
// last store call; nil when there is nothing to read ahead.
func (tx *txn) aheadKeys() []string {
	if tx.next == nil {
		return nil
	}
	return tx.next.readKeys(tx)
}

// keepAhead keeps the values of aheadKeys() for the next check.
func (tx *txn) keepAhead(vals [][]byte) { tx.ahead = readAhead{by: tx.next, vals: vals} }

// takeAhead returns the values read ahead for r (in the order of its
// readKeys), or nil when nothing was.
func (tx *txn) takeAhead(r reader) [][]byte {
	if tx.ahead.by != r || tx.ahead.vals == nil {
		return nil
	}
	v := tx.ahead.vals
	tx.ahead = readAhead{}
	return v
}

// engine is one immutable build of the configuration: Reload builds a new one and
// swaps it in atomically, so in-flight requests finish on the one they started.
type engine struct {
	cfg        Config
	checks     []check
	next       []reader // next[i]: checks[i+1] when it is a reader, else nil
	failClosed bool
	log        *slog.Logger
	m          *metrics
	cm         *checkMetrics
	spf        *spfEval // nil when neither the SPF check nor greylisting needs it
	closers    []func() error
	logPC      uintptr // logDecisionPC(), looked up once per configuration
}

// decision is the outcome of one request, for the reply, the log line and metrics.
type decision struct {
	action Action
	check  string // the check that decided; "" when none did
	idx    int    // that check's index in engine.checks; -1 when none did
	reason string
	notes  []string // non-fatal events (store failures in fail-open mode)
	warns  []string // checks' notes (DNS lookups that failed), logged as warnings=
	err    error
}

// decide runs the checks in order.
func (e *engine) decide(ctx context.Context, tx *txn) decision {
	var soft *decision // first PREPEND/WARN/INFO, answered if nothing decides
	var notes []string // store failures passed over (store_failure: open)
	var warns []string // checks' notes, logged whatever decides
	var why []string   // reasons of the checks that had no objection, for the log
	cm := e.cm
	// The txn is the connection's, reused: what it holds for one request
	// starts over.
	tx.next, tx.ahead, tx.grey = nil, readAhead{}, greyPlan{}
	start := time.Now()
	for i, c := range e.checks {
		// Only the check right before a reader reads ahead for it: nothing
		// runs between the read and its use.
		tx.next = e.next[i]
		v, err := e.run(ctx, c, tx)
		tx.next = nil
		// One clock reading ends this check's time and starts the next one's.
		end := time.Now()
		cm.latency[i].Observe(end.Sub(start).Seconds())
		start = end
		if err != nil {
			// A store call that failed because this request's own deadline
			// passed (DNS used the budget up) says nothing about the store:
			// failing open there would skip greylisting and rate limits for
			// every slow request.
			if errors.Is(err, store.ErrUnavailable) && ctx.Err() == nil {
				e.m.storeFailures.WithLabelValues(c.name(), e.cfg.StoreFailure).Inc()
				if !e.failClosed {
					cm.result(i, "fail_open")
					notes = append(notes, c.name()+": "+err.Error())
					continue
				}
			}
			cm.result(i, "error")
			return decision{action: tempFail, check: c.name(), idx: i, reason: "internal error", notes: notes, warns: warns, err: err}
		}
		cm.result(i, v.action.Label())
		if v.note != "" {
			warns = append(warns, c.name()+": "+v.note)
		}
		if v.action.Final() || v.stop {
			return decision{action: v.action, check: c.name(), idx: i, reason: v.reason, notes: notes, warns: warns}
		}
		if !v.action.IsDunno() && soft == nil {
			soft = &decision{action: v.action, check: c.name(), idx: i, reason: v.reason}
		} else if v.reason != "" {
			why = append(why, v.reason)
		}
	}
	if soft != nil {
		soft.notes, soft.warns = notes, warns
		return *soft
	}
	return decision{action: Dunno, idx: -1, reason: strings.Join(why, "; "), notes: notes, warns: warns}
}

// run calls one check, turning a panic into an error so a bug in one check
// answers a temporary action instead of killing the connection (or the daemon).
func (e *engine) run(ctx context.Context, c check, tx *txn) (v verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			e.m.panics.WithLabelValues(c.name()).Inc()
			e.log.Error("policy check panicked", "check", c.name(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("check %s panicked: %v", c.name(), r)
		}
	}()
	return c.eval(ctx, tx)
}

// logDecision writes the one line per request. act is d.action as answered;
// at is when the reply went out.
//
// It hands the record to the handler itself rather than through
// Logger.LogAttrs, which reads the clock and walks the stack for the caller's
// PC on every call: the reply's end time stands for the log time (they are
// nanoseconds apart), and the PC is this function's, taken once at start-up.
func (e *engine) logDecision(tx *txn, d decision, act string, at time.Time, took time.Duration) {
	lvl := slog.LevelInfo
	if d.err != nil {
		lvl = slog.LevelWarn
	}
	ctx := context.Background()
	h := e.log.Handler()
	if !h.Enabled(ctx, lvl) {
		return
	}
	r := tx.req
	var buf [13]slog.Attr
	attrs := append(buf[:0],
		slog.String("queue_id", r.QueueID),
		slog.String("state", r.ProtocolState),
		slog.String("client", clientString(r)),
		slog.String("helo", r.HeloName),
		slog.String("sender", r.Sender),
		slog.String("recipient", r.Recipient),
	)
	if r.SASLUsername != "" {
		attrs = append(attrs, slog.String("sasl_username", r.SASLUsername))
	}
	attrs = append(attrs,
		slog.String("action", act),
		slog.String("check", d.check),
		slog.String("reason", d.reason),
		slog.Duration("took", took),
	)
	if len(d.notes) > 0 {
		attrs = append(attrs, slog.String("fail_open", strings.Join(d.notes, "; ")))
	}
	if len(d.warns) > 0 {
		attrs = append(attrs, slog.String("warnings", strings.Join(d.warns, "; ")))
	}
	if d.err != nil {
		attrs = append(attrs, slog.String("err", d.err.Error()))
	}
	rec := slog.NewRecord(at, lvl, "policy decision", e.logPC)
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
}

// logDecisionPC is the program counter recorded with decision log lines: the
// source a handler with AddSource shows is logDecision itself.
func logDecisionPC() uintptr { return reflect.ValueOf((*engine).logDecision).Pointer() }

func clientString(r *Request) string {
	name := r.ClientName
	if name == "" {
		name = "unknown"
	}
	return name + "[" + r.ClientAddress + "]"
}

// close releases what the build opened (GeoIP database).
func (e *engine) close() {
	for _, c := range e.closers {
		_ = c()
	}
}

// expand replaces {name} placeholders in an action's text; kv holds
// "{name}", value pairs. Unknown placeholders stay as written.
func expand(a Action, kv ...string) Action {
	if strings.IndexByte(a.Text, '{') < 0 {
		return a
	}
	var b strings.Builder
	b.Grow(len(a.Text) + 32)
	t := a.Text
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			break
		}
		name := t[i : i+j+1]
		b.WriteString(t[:i])
		repl := name
		for k := 0; k+1 < len(kv); k += 2 {
			if kv[k] == name {
				repl = kv[k+1]
				break
			}
		}
		b.WriteString(repl)
		t = t[i+j+1:]
	}
	b.WriteString(t)
	a.Text = b.String()
	return a
}
