package policyd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/dovetail-mail/dovetail/store"
)

// greylistCheck is greylisting with postgrey's semantics: the triplet (client
// network, normalised sender, recipient) is deferred for Delay after it is first
// seen; a retry after the delay (within RetryWindow) passes and the triplet is
// remembered for MaxAge; a client address whose retries got through
// greylisting AutoWhitelistAfter times (at most one counted per
// AutoWhitelistInterval) skips greylisting altogether for as long as it keeps
// sending at least once per MaxAge.
//
// Store layout (values are decimal Unix seconds):
//
//	grey:t:<net>/<sender>/<recipient>  "first passed"  passed=0 until the first pass;
//	                                    TTL retry_window, then max_age once passed
//	grey:awl:<client address>           "count last"   TTL max_age, renewed while used
type greylistCheck struct {
	st                   store.Store
	delay, retry, maxAge time.Duration
	v4bits, v6bits       int
	awlAfter             int
	awlInterval          time.Duration
	exempt               *exemptions
	spf                  *spfEval // set when SPF-pass senders are exempt
	delim                string
	action               Action
	addHeader            bool
	hostname             string
}

func (g *greylistCheck) name() string { return CheckGreylist }

// greyPlan is greylisting's view of one request before any store access,
// worked out once: by readKeys when the check before reads ahead for
// greylisting, else by eval.
type greyPlan struct {
	done bool
	// skip: greylisting does not apply (why is the log reason, "" for none).
	skip bool
	why  string
	// spf: the SPF exemption must be asked before the store is read.
	spf bool
	// keys are the client's AWL key (when the auto-whitelist is on) and the
	// triplet's, in the order they are read; set by readKeys.
	keys [2]string
	n    int
}

func (g *greylistCheck) plan(tx *txn) *greyPlan {
	p := &tx.grey
	if p.done {
		return p
	}
	p.done = true
	r := tx.req
	switch {
	case r.ProtocolState != StateRcpt || !r.ClientAddr.IsValid():
		p.skip = true
	case r.Authenticated():
		p.skip, p.why = true, "greylist: authenticated"
	default:
		if why := g.exempt.match(r); why != "" {
			p.skip, p.why = true, "greylist: exempt "+why
		} else {
			p.spf = g.spf != nil && g.spf.applies(r)
		}
	}
	return p
}

// readKeys names the keys eval reads first (see reader): the client's AWL
// entry and the triplet, read together, as eval reads them from a
// store.MultiGetter. None when the request is exempt or SPF must be asked
// first (a read ahead of a DNS lookup would be older than eval's own).
func (g *greylistCheck) readKeys(tx *txn) []string {
	p := g.plan(tx)
	if p.skip || p.spf {
		return nil
	}
	if p.n == 0 {
		r := tx.req
		if g.awlAfter > 0 {
			p.keys[p.n] = g.awlKey(r)
			p.n++
		}
		p.keys[p.n] = g.tripletKeyOf(r)
		p.n++
	}
	return p.keys[:p.n]
}

// tripletKeyOf is the store key of the request's triplet.
func (g *greylistCheck) tripletKeyOf(r *Request) string {
	return requestTripletKey(clientNet(r, g.v4bits, g.v6bits), r.Sender, r.Recipient, g.delim)
}

func (g *greylistCheck) awlKey(r *Request) string {
	var kb [64]byte
	return string(r.ClientAddr.AppendTo(append(kb[:0], awlPrefix...)))
}

func (g *greylistCheck) eval(ctx context.Context, tx *txn) (verdict, error) {
	r := tx.req
	p := g.plan(tx)
	if p.skip {
		if p.why == "" {
			return pass, nil
		}
		return verdict{action: Dunno, reason: p.why}, nil
	}
	if p.spf && g.spf.outcome(ctx, tx).result == spf.Pass {
		return verdict{action: Dunno, reason: "greylist: exempt, spf pass"}, nil
	}
	// The auto-whitelist is per client address, as postgrey's: one good
	// server must not whitelist every host of its /24 (a cloud provider's
	// neighbours). The triplet is per network (postgrey's --lookup-by-subnet).
	now := tx.now.Unix()
	var awlKey, key string // the triplet's, built when it is read
	// The client's AWL entry is read once: a pass below credits it from this
	// reading instead of reading it again. Where a read is a round trip
	// (Redis), the triplet is read ahead with it, or both with the previous
	// check's last store call (tx.ahead); on a local store the triplet is read
	// only when the client is not auto-whitelisted (reading ahead would fill
	// the cache with the triplets of whitelisted clients).
	var awl clientCredit
	var triplet []byte // the triplet's value when read ahead
	read := false      // whether it was
	if vs := tx.takeAhead(g); vs != nil {
		keys := p.keys[:p.n]
		key, triplet, read = keys[len(keys)-1], vs[len(vs)-1], true
		if g.awlAfter > 0 {
			awlKey = keys[0]
			if vs[0] != nil {
				awl.count, awl.last, _ = parsePair(vs[0]) // a damaged entry counts as none
			}
		}
	} else if g.awlAfter > 0 {
		awlKey = g.awlKey(r)
		var entry []byte
		if _, batched := g.st.(store.MultiGetter); batched {
			key = g.tripletKeyOf(r)
			vs, err := store.GetMulti(ctx, g.st, awlKey, key)
			if err != nil {
				return verdict{}, err
			}
			entry, triplet, read = vs[0], vs[1], true
		} else {
			v, err := g.st.Get(ctx, awlKey)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return verdict{}, err
			}
			entry = v
		}
		if entry != nil {
			awl.count, awl.last, _ = parsePair(entry) // a damaged entry counts as none
		}
	}
	if g.awlAfter > 0 && awl.count >= int64(g.awlAfter) {
		// Renewed at most once per interval (postgrey: an hour), so a
		// client that keeps sending stays whitelisted past max_age.
		if now-awl.last >= int64(g.awlInterval/time.Second) || awl.last > now {
			if err := g.st.Set(ctx, awlKey, pair(awl.count+1, now), g.maxAge); err != nil {
				return verdict{}, err
			}
		}
		return verdict{action: Dunno, reason: "greylist: client " + r.ClientAddr.String() + " auto-whitelisted"}, nil
	}
	if key == "" {
		key = g.tripletKeyOf(r)
	}
	var first, passed int64
	var err error
	switch {
	case !read:
		first, passed, err = g.getPair(ctx, key)
	case triplet == nil:
		err = store.ErrNotFound
	default:
		first, passed, err = parsePair(triplet)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return g.greylist(ctx, r, key, now, 0, "greylist: new triplet")
	case err != nil:
		return verdict{}, err
	case passed > 0:
		// Known good triplet: refresh its lifetime. The client is credited
		// only for retries that got through greylisting (postgrey's
		// !last_was_successful), not for every later message of the triplet.
		if err := g.st.Set(ctx, key, pair(first, now), g.maxAge); err != nil {
			return verdict{}, err
		}
		return verdict{action: Dunno, reason: "greylist: triplet passed before"}, nil
	}
	age := now - first
	switch {
	case age > int64(g.retry/time.Second):
		return g.greylist(ctx, r, key, now, 0, "greylist: retry window expired, starting over")
	case age < 0:
		// First seen "in the future": the clock was stepped back. Waiting
		// for it to reach that time would defer the triplet for as long as
		// the clock was off; the AWL entry's renewal treats it the same way.
		return g.greylist(ctx, r, key, now, 0, "greylist: first seen after now (clock stepped back), starting over")
	case age < int64(g.delay/time.Second):
		return g.greylist(ctx, r, key, first, age, "greylist: retried too early")
	}
	if err := g.st.Set(ctx, key, pair(first, now), g.maxAge); err != nil {
		return verdict{}, err
	}
	if err := g.creditClient(ctx, awlKey, awl, now); err != nil {
		return verdict{}, err
	}
	v := verdict{action: Dunno, reason: fmt.Sprintf("greylist: passed after %ds", age)}
	// One header per message, as postgrey: every recipient of a message that
	// waited passes at once, and Postfix adds a header per PREPEND.
	if g.addHeader && (r.Instance == "" || r.Instance != tx.conn.headerInstance) {
		tx.conn.headerInstance = r.Instance
		v.action = Action{Verb: VerbPrepend, Text: fmt.Sprintf("X-Greylist: delayed %d seconds by dovetail-policyd at %s; %s",
			age, g.hostname, tx.now.UTC().Format(time.RFC1123Z))}
	}
	return v, nil
}

// greylist defers the request, why being the log reason; a new triplet (age 0)
// is stored first.
func (g *greylistCheck) greylist(ctx context.Context, r *Request, key string, first, age int64, why string) (verdict, error) {
	if age == 0 {
		if err := g.st.Set(ctx, key, pair(first, 0), g.retry); err != nil {
			return verdict{}, err
		}
	}
	left := int64(g.delay/time.Second) - age
	a := expand(g.action, "{delay}", strconv.FormatInt(left, 10), "{client}", r.ClientAddress,
		"{sender}", r.Sender, "{recipient}", r.Recipient)
	return verdict{action: a, reason: why}, nil
}

// clientCredit is a client address's AWL entry: successful retries and the
// time of the last one counted.
type clientCredit struct{ count, last int64 }

// creditClient counts one successful retry for the client, at most once per
// awlInterval (so one busy sender cannot whitelist its client in a burst).
// awl is the entry as eval read it at the start of this request (a
// read-modify-write like before, without a second read of the same key).
func (g *greylistCheck) creditClient(ctx context.Context, awlKey string, awl clientCredit, now int64) error {
	if g.awlAfter <= 0 {
		return nil
	}
	if awl.count > 0 && now-awl.last < int64(g.awlInterval/time.Second) {
		return nil
	}
	return g.st.Set(ctx, awlKey, pair(awl.count+1, now), g.maxAge)
}

// getPair reads a "a b" value; a missing key is ErrNotFound.
func (g *greylistCheck) getPair(ctx context.Context, key string) (int64, int64, error) {
	b, err := g.st.Get(ctx, key)
	if err != nil {
		return 0, 0, err
	}
	return parsePair(b)
}

// parsePair parses a "a b" value; a damaged one is ErrNotFound, so that
// greylisting starts over.
func parsePair(b []byte) (int64, int64, error) {
	as, bs, _ := strings.Cut(string(b), " ")
	x, err1 := strconv.ParseInt(as, 10, 64)
	y, err2 := strconv.ParseInt(bs, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, store.ErrNotFound
	}
	return x, y, nil
}

func pair(a, b int64) []byte {
	buf := strconv.AppendInt(make([]byte, 0, 24), a, 10)
	buf = append(buf, ' ')
	return strconv.AppendInt(buf, b, 10)
}

// awlPrefix starts a client address's auto-whitelist key.
const awlPrefix = "grey:awl:"

// clientNet is the client's network as postgrey's --lookup-by-subnet keys it,
// in netip's String form.
func clientNet(r *Request, v4, v6 int) string {
	a := r.ClientAddr
	p, err := a.Prefix(netBits(a, v4, v6))
	if err != nil {
		return a.String()
	}
	return p.String()
}

// netBits is the prefix length a client is counted by: v4 for an IPv4
// address, v6 for an IPv6 one.
func netBits(a netip.Addr, v4, v6 int) int {
	if a.Is4() {
		return v4
	}
	return v6
}

// tripletKey builds the store key from the normalised sender and recipient;
// very long ones (hostile or broken senders) are hashed so keys stay bounded.
func tripletKey(net, sender, rcpt string) string {
	k := "grey:t:" + net + "/" + sender + "/" + rcpt
	if len(k) <= maxTripletKey {
		return k
	}
	return hashedTripletKey(net, []byte(sender+"/"+rcpt))
}

const maxTripletKey = 256

func hashedTripletKey(net string, senderRcpt []byte) string {
	sum := sha256.Sum256(senderRcpt)
	return "grey:t:" + net + "/#" + hex.EncodeToString(sum[:16])
}

// requestTripletKey is tripletKey(net, normalizeSender(sender, delims),
// strings.ToLower(rcpt)) assembled in one buffer: one allocation instead of
// three or four.
func requestTripletKey(net, sender, rcpt, delims string) string {
	var kb [maxTripletKey + 1]byte
	k := append(kb[:0], "grey:t:"...)
	k = append(k, net...)
	k = append(k, '/')
	start := len(k)
	k = appendNormalizedSender(k, sender, delims)
	k = append(k, '/')
	k = appendLower(k, rcpt)
	if len(k) <= maxTripletKey {
		return string(k)
	}
	return hashedTripletKey(net, k[start:])
}

// appendLower appends strings.ToLower(s), without the intermediate string
// when s is ASCII.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return append(dst, strings.ToLower(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// normalizeSender reduces the sender as postgrey does, so that every message of a
// mailing list or bounce stream maps to one triplet: lower case, BATV (prvs=)
// and SRS wrappers removed, "+extension" stripped, and numbers that form a
// whole word in the local part replaced by "#".
func normalizeSender(s, delims string) string {
	return string(appendNormalizedSender(nil, s, delims))
}

// appendNormalizedSender appends normalizeSender's result to dst.
func appendNormalizedSender(dst []byte, s, delims string) []byte {
	s = strings.ToLower(s)
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return append(dst, s...)
	}
	local, domain := s[:at], s[at+1:]
	switch {
	case strings.HasPrefix(local, "prvs="):
		// prvs=KDDDSSSSSS=user (RFC draft), prvs=user=KDDDSSSSSS as some
		// senders write it (postgrey reads both: the tag changes with every
		// message, so keeping it made each one a new triplet), or the older
		// prvs=user/KDDDSSSSSS.
		rest := local[5:]
		if a, b, ok := strings.Cut(rest, "="); ok {
			local = b
			if isBATVTag(b) && !isBATVTag(a) {
				local = a
			}
		} else if u, _, ok := strings.Cut(rest, "/"); ok {
			local = u
		}
	case strings.HasPrefix(local, "srs0="), strings.HasPrefix(local, "srs1="):
		rest := local[5:]
		if i := strings.Index(rest, "=="); i >= 0 && local[3] == '1' {
			rest = rest[i+2:]
		}
		// HHH=TT=orig-domain=orig-local
		if f := strings.SplitN(rest, "=", 4); len(f) == 4 && f[2] != "" && f[3] != "" {
			local, domain = f[3], f[2]
		}
	}
	if delims != "" {
		if i := strings.IndexAny(local, delims); i > 0 {
			local = local[:i]
		}
	}
	dst = appendHashNumbers(dst, local)
	dst = append(dst, '@')
	return append(dst, domain...)
}

// isBATVTag reports a BATV prvs tag-val (lower case): a key digit, three
// digits of day and six hex digits of hash.
func isBATVTag(s string) bool {
	if len(s) != 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || i >= 4 && 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// appendHashNumbers appends s with runs of digits delimited by non-word
// characters (Perl's \b\d+\b) replaced by "#".
func appendHashNumbers(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j > i && (i == 0 || !isWord(s[i-1])) && (j == len(s) || !isWord(s[j])) {
			dst = append(dst, '#')
			i = j
			continue
		}
		if j > i {
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		// skip a whole word so digits inside it are not matched
		for j < len(s) && isWord(s[j]) {
			j++
		}
		if j == i {
			j++
		}
		dst = append(dst, s[i:j]...)
		i = j
	}
	return dst
}

func isWord(c byte) bool {
	return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}
