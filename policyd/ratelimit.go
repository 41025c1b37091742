package policyd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// rateCheck enforces message and recipient limits in sliding windows
// (store.WindowAdd), per SASL user, sender or client address; several limits
// apply at once (e.g. 100/hour and 1000/day).
//
// Counting happens at RCPT, the one stage every Postfix setup sends to the policy
// service (smtpd_recipient_restrictions), so a limit also stops the message
// before DATA:
//   - recipients: +1 per RCPT request;
//   - messages: +1 at the first RCPT of a transaction. Postfix sends all
//     requests of one SMTP session over the same policy connection and keeps
//     `instance` constant for one message, so the connection remembers which
//     instance it counted. (Counting at END-OF-MESSAGE with recipient_count
//     would be exact for accepted mail but needs a second hook in
//     smtpd_end_of_data_restrictions and cannot refuse recipients one by one.)
//
// Attempts count, including refused ones: a client hammering a limit stays
// limited while a well-behaved one recovers as the window slides. Each counter
// costs one store round trip (add and read in one WindowAdd), so two policyd
// instances sharing Redis see each other's counts at once; on Redis the last
// one also carries the next check's reads (greylisting's), saving that check
// its own round trip.
type rateCheck struct {
	st             store.Store
	delim          string
	v4bits, v6bits int // client_address limits count per network of this size
	limits         []rateLimit
}

type rateLimit struct {
	name, key   string
	msgs, rcpts int64
	window      time.Duration
	action      Action
}

func newRateCheck(c RateLimitConfig, st store.Store) *rateCheck {
	rc := &rateCheck{st: st, delim: c.RecipientDelimiter, v4bits: c.IPv4Prefix, v6bits: c.IPv6Prefix}
	for _, l := range c.Limits {
		rc.limits = append(rc.limits, rateLimit{name: l.Name, key: l.Key, msgs: l.Messages, rcpts: l.Recipients,
			window: l.Window.D(), action: mustAction(l.Action)})
	}
	return rc
}

func (rc *rateCheck) name() string { return CheckRateLimit }

func (rc *rateCheck) eval(ctx context.Context, tx *txn) (verdict, error) {
	r := tx.req
	if r.ProtocolState != StateRcpt {
		return pass, nil
	}
	newMsg := r.Instance == "" || r.Instance != tx.conn.countedInstance
	if newMsg {
		// Set before counting: an error or a refusal below must not make the
		// next RCPT of the same message count it again.
		tx.conn.countedInstance = r.Instance
		tx.conn.refused = nil
	} else if tx.conn.refused != nil {
		return *tx.conn.refused, nil
	}
	// Every limit counts the attempt, even after an earlier one refused it:
	// otherwise a daily limit would not see the hammering an hourly one
	// refuses. The first limit exceeded decides. The counters are listed
	// first, so that the last one can carry the next check's reads.
	var kb [256]byte
	var cb [4]rateCounter
	counters := cb[:0]
	for i := range rc.limits {
		l := &rc.limits[i]
		// "rate:<limit>:<who>" built once; ":m" and ":r" complete it per counter.
		k := append(kb[:0], "rate:"...)
		k = append(k, l.name...)
		k = append(k, ':')
		whoAt := len(k)
		k = appendRateKeyValue(k, r, l.key, rc.delim, rc.v4bits, rc.v6bits)
		if len(k) == whoAt {
			continue
		}
		if l.msgs > 0 && newMsg {
			counters = append(counters, rateCounter{l, string(append(k, ":m"...)), whoAt, true})
		}
		if l.rcpts > 0 {
			counters = append(counters, rateCounter{l, string(append(k, ":r"...)), whoAt, false})
		}
	}
	var refused *verdict
	msgRefusal := false
	for i, c := range counters {
		l := c.limit
		n, err := rc.add(ctx, tx, c.key, l.window, i == len(counters)-1)
		if err != nil {
			return verdict{}, fmt.Errorf("rate limit %s: %w", l.name, err)
		}
		who := c.key[c.whoAt : len(c.key)-2]
		switch {
		case refused != nil:
		case c.msgs && n > l.msgs:
			v := rc.exceeded(*l, who, fmt.Sprintf("%d messages in %s > %d", n, l.window, l.msgs))
			refused, msgRefusal = &v, true
		case !c.msgs && n > l.rcpts:
			v := rc.exceeded(*l, who, fmt.Sprintf("%d recipients in %s > %d", n, l.window, l.rcpts))
			refused = &v
		}
	}
	if refused == nil {
		return pass, nil
	}
	if msgRefusal {
		// The message was counted once: its later recipients get the same answer.
		tx.conn.refused = refused
	}
	return *refused, nil
}

// rateCounter is one window a request counts in: a limit's messages or its
// recipients.
type rateCounter struct {
	limit *rateLimit
	key   string // "rate:<limit>:<who>:m" or ":r"
	whoAt int    // where <who> starts in key
	msgs  bool
}

// add counts one event in the window at key. The check's last add carries the
// next check's reads where the store sends them in the same round trip
// (store.ReadAheader): that check would read them right after this call
// anyway, and reading changes nothing if it does not run. The add's result and
// error are WindowAdd's either way.
func (rc *rateCheck) add(ctx context.Context, tx *txn, key string, window time.Duration, last bool) (int64, error) {
	if last {
		if ra, ok := rc.st.(store.ReadAheader); ok {
			if keys := tx.aheadKeys(); len(keys) > 0 {
				n, vals, err := ra.WindowAddGetMulti(ctx, key, tx.now, window, 1, keys...)
				if vals != nil {
					tx.keepAhead(vals)
				}
				return n, err
			}
		}
	}
	return rc.st.WindowAdd(ctx, key, tx.now, window, 1)
}

func (rc *rateCheck) exceeded(l rateLimit, who, what string) verdict {
	return verdict{action: expand(l.action, "{limit}", l.name, "{key}", who), reason: "rate limit " + l.name + " for " + who + ": " + what}
}

// appendRateKeyValue appends the counted identity, normalised, to dst; long
// values (which no real login or address reaches) are hashed to bound key
// sizes. Nothing is appended when the request has no such identity. A client
// address counts as its network of v4/v6 bits, written as a prefix unless the
// network is the host alone (so keys of a per-host limit stay the address).
func appendRateKeyValue(dst []byte, r *Request, key, delim string, v4, v6 int) []byte {
	var v string
	switch key {
	case KeySASLUsername:
		v = r.SASLUsername
	case KeySender:
		v = stripDetail(canonicalAddr(r.Sender), delim)
	case KeyClientAddress:
		a := r.ClientAddr
		if !a.IsValid() {
			return dst
		}
		if bits := netBits(a, v4, v6); bits > 0 && bits < a.BitLen() {
			if p, err := a.Prefix(bits); err == nil {
				return p.AppendTo(dst)
			}
		}
		return a.AppendTo(dst) // netip's String form, far below the hashing length
	}
	start := len(dst)
	dst = appendLower(dst, v)
	if len(dst)-start > 200 {
		sum := sha256.Sum256(dst[start:])
		dst = append(dst[:start], '#')
		dst = hex.AppendEncode(dst, sum[:16])
	}
	return dst
}
