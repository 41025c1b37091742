package sieve

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"mime"
	"net/url"
	"strings"
	"time"
)

// enotify (RFC 5435) with mailto (RFC 5436); duplicate (RFC 7352).

type mailtoURI struct {
	to      []string
	cc      []string
	toRaw   []string
	ccRaw   []string
	bcc     []string
	subject string
	body    string
	headers []Header
}

func pctDecode(s string) (string, bool) {
	v, err := url.PathUnescape(s)
	if err != nil {
		return "", false
	}
	return v, true
}

// pctDecodeField decodes what becomes (part of) a header field of the
// notification: addresses, subject and other header fields must be one line
// (RFC 6068 allows an encoded line break in "body" only). A CR or LF would
// inject header fields, a NUL cut the field short.
func pctDecodeField(s string) (string, bool) {
	v, ok := pctDecode(s)
	if !ok || strings.ContainsAny(v, "\r\n\x00") {
		return "", false
	}
	return v, true
}

// isQchar reports whether c may appear unencoded in a mailto URI (RFC 6068
// qchar, without "=" and "&" which delimit header fields).
func isQchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!$'()*+,-.:;@_~", c) >= 0
}

// validMailtoChars checks the unencoded characters of a mailto URI body: the
// to part takes qchars except ':', ';' and ',' (a list is separated by
// "%2C"); header names and values take qchars (and '=' in values).
func validMailtoChars(to, hfields string) bool {
	for i := 0; i < len(to); i++ {
		c := to[i]
		if c == '%' {
			continue
		}
		if c == ':' || c == ';' || c == ',' || !isQchar(c) {
			return false
		}
	}
	if hfields == "" {
		return true
	}
	for _, kv := range strings.Split(hfields, "&") {
		for i := 0; i < len(kv); i++ {
			if c := kv[i]; c != '%' && c != '=' && !isQchar(c) {
				return false
			}
		}
	}
	return true
}

func parseMailto(uri string) (*mailtoURI, bool) {
	if len(uri) < 7 || !strings.EqualFold(uri[:7], "mailto:") {
		return nil, false
	}
	rest := uri[7:]
	q := ""
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, q = rest[:i], rest[i+1:]
	}
	if !validMailtoChars(rest, q) {
		return nil, false
	}
	m := &mailtoURI{}
	addAddrs := func(list string, dst *[]string, raw *[]string) bool {
		dec, ok := pctDecodeField(list)
		if !ok {
			return false
		}
		if strings.TrimSpace(dec) == "" {
			return true
		}
		for _, p := range parseAddressList(dec) {
			if !p.ok {
				return false
			}
			*dst = append(*dst, p.local+"@"+p.domain)
			if raw != nil {
				*raw = append(*raw, strings.TrimSpace(p.raw))
			}
		}
		return true
	}
	if rest != "" && !addAddrs(rest, &m.to, &m.toRaw) {
		return nil, false
	}
	if q != "" {
		for _, kv := range strings.Split(q, "&") {
			k, v, _ := strings.Cut(kv, "=")
			k, ok1 := pctDecode(k)
			if !ok1 {
				return nil, false
			}
			switch strings.ToLower(k) {
			case "to":
				if !addAddrs(v, &m.to, &m.toRaw) {
					return nil, false
				}
			case "cc":
				if !addAddrs(v, &m.cc, &m.ccRaw) {
					return nil, false
				}
			case "bcc":
				if !addAddrs(v, &m.bcc, nil) {
					return nil, false
				}
			case "subject":
				d, ok := pctDecodeField(v)
				if !ok {
					return nil, false
				}
				m.subject = d
			case "body":
				d, ok := pctDecode(v)
				if !ok {
					return nil, false
				}
				m.body = d
			default:
				d, ok := pctDecodeField(v)
				if !ok || !validHeaderName(k) {
					return nil, false
				}
				m.headers = append(m.headers, Header{Name: k, Value: d})
			}
		}
	}
	if len(m.to) == 0 && len(m.cc) == 0 && len(m.bcc) == 0 {
		return nil, false
	}
	return m, true
}

// validOptionName checks an enotify option name (RFC 5435 section 3.7):
// alphanumeric, then alphanumerics, '-', '.' and '_'.
func validOptionName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || strings.IndexByte("-._", c) < 0) {
			return false
		}
	}
	return true
}

func validNotifyMethod(uri string) bool {
	_, ok := parseMailto(uri)
	return ok
}

type notifyCmd struct {
	from       *strv
	importance *strv
	options    []strv
	message    *strv
	method     strv
}

func compileNotify(c *compiler, n *cmdNode, a *argp) cmd {
	nc := &notifyCmd{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		switch t.tag {
		case "from":
			s, _ := a.str("from")
			nc.from = &s
		case "importance":
			s, ok := a.str("importance")
			if ok && s.isConst() && s.lit != "1" && s.lit != "2" && s.lit != "3" {
				a.fail(t.pos, "invalid :importance argument '%s' for notify command", s.lit)
			}
			nc.importance = &s
		case "options":
			nc.options = a.strList("options")
		case "message":
			s, _ := a.str("message")
			nc.message = &s
		default:
			a.unknownTag(t)
		}
	}
	nc.method, _ = a.str("method")
	if a.failed {
		return nil
	}
	if nc.method.isConst() {
		if !strings.HasPrefix(strings.ToLower(nc.method.lit), "mailto:") {
			a.fail(n.pos, "invalid notify method '%s': unsupported URI scheme", nc.method.lit)
			return nil
		}
		if !validNotifyMethod(nc.method.lit) {
			a.fail(n.pos, "invalid notify method '%s': invalid mailto URI", nc.method.lit)
			return nil
		}
	}
	if nc.from != nil && nc.from.isConst() {
		if _, ok := normalizeAddress(nc.from.lit); !ok {
			a.fail(n.pos, "invalid :from address '%s' for notify command", nc.from.lit)
			return nil
		}
	}
	for _, o := range nc.options {
		if o.isConst() {
			k, v, ok := strings.Cut(o.lit, "=")
			if !ok || !validOptionName(k) || strings.ContainsAny(v, "\r\n\x00") {
				a.fail(n.pos, "invalid option '%s' for notify command", o.lit)
				return nil
			}
		}
	}
	return nc
}

func (c *notifyCmd) exec(r *run) error {
	a := &Action{Type: "notify", Method: r.expand(&c.method), Importance: "2"}
	if !validNotifyMethod(a.Method) {
		return r.runtimeErr("invalid notify method '%s'", a.Method)
	}
	if c.from != nil {
		a.From = r.expand(c.from)
		if _, ok := normalizeAddress(a.From); !ok {
			return r.runtimeErr("invalid :from address '%s' for notify action", a.From)
		}
	}
	if c.importance != nil {
		a.Importance = r.expand(c.importance)
	}
	a.Options = r.expandList(c.options)
	if c.message != nil {
		a.Message = r.expand(c.message)
	}
	return r.addAction(a, false)
}

// NotifyMessages builds the outgoing messages for a mailto notify action:
// one (envelope-from, rcpt, message) per recipient. done tracks recipients
// already notified in this delivery (may be nil).
func NotifyMessages(env *Env, a *Action, done map[string]bool) []OutgoingMessage {
	mt, ok := parseMailto(a.Method)
	if !ok {
		return nil
	}
	hs := env.Message.headers
	for _, h := range hs {
		if strings.EqualFold(h.Name, "auto-submitted") && !strings.EqualFold(strings.TrimSpace(unfold(h.Value)), "no") {
			return nil
		}
	}
	cfg := func(k string) string {
		if env.Config == nil {
			return ""
		}
		return env.Config[k]
	}
	envFrom := "postmaster@" + domainOf(env.Envelope.To)
	if pm := cfg("postmaster_address"); pm != "" {
		envFrom = pm
	}
	switch cfg("sieve_notify_mailto_envelope_from") {
	case "sender":
		envFrom = env.Envelope.From
	case "recipient":
		envFrom = env.Envelope.To
	case "orig_recipient":
		envFrom = env.Envelope.OrigTo
	case "user_email":
		envFrom = cfg("sieve_user_email")
	default:
		if a.From != "" {
			if p := parseAddressList(a.From); len(p) == 1 && p[0].ok {
				envFrom = p[0].local + "@" + p[0].domain
			}
		}
	}
	if env.Envelope.From == "" || env.Envelope.From == "<>" {
		envFrom = ""
	}
	subject := mt.subject
	if subject == "" && a.LegacyNotify {
		// the deprecated notify extension: the message is the body
		subject = "[SIEVE] New mail notification"
	}
	if subject == "" {
		subject = a.Message
	}
	if subject == "" {
		orig := ""
		if v := headerValues(hs, "subject"); len(v) > 0 {
			orig = decodeHeader(v[0])
		}
		subject = "[SIEVE] New mail"
		if orig != "" {
			subject = "Notification: " + orig
		}
	}
	body := mt.body
	if body == "" {
		body = a.Message
		if body == "" {
			body = "Notification of new message."
		}
	}
	from := a.From
	if from == "" {
		from = "Postmaster <" + "postmaster@" + domainOf(env.Envelope.To) + ">"
	}
	prio := map[string]string{"1": "1 (Highest)", "2": "3 (Normal)", "3": "5 (Lowest)"}[a.Importance]
	imp := map[string]string{"1": "high", "2": "normal", "3": "low"}[a.Importance]
	if prio == "" {
		prio, imp = "3 (Normal)", "normal"
	}
	var b strings.Builder
	hdr := func(n, v string) { writeField(&b, n, v) }
	hdr("X-Sieve", "dovetail Sieve")
	hdr("Message-ID", "<dovetail-notify-"+shortHash(a.Method+body)+"@"+domainOf(env.Envelope.To)+">")
	now := time.Now()
	if env.Now != nil {
		now = env.Now()
	}
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("From", from)
	// recipients: drop duplicates within the URI and ones already notified
	seen := map[string]bool{}
	var rcpts []string
	filter := func(addrs, raws []string) []string {
		var hv []string
		for i, ad := range addrs {
			k := strings.ToLower(ad)
			if seen[k] || (done != nil && done[k]) {
				continue
			}
			seen[k] = true
			rcpts = append(rcpts, ad)
			if raws != nil {
				hv = append(hv, raws[i])
			}
		}
		return hv
	}
	toH := filter(mt.to, mt.toRaw)
	ccH := filter(mt.cc, mt.ccRaw)
	filter(mt.bcc, nil)
	if len(toH) > 0 {
		hdr("To", strings.Join(toH, ", "))
	}
	if len(ccH) > 0 {
		hdr("Cc", strings.Join(ccH, ", "))
	}
	for _, h := range mt.headers {
		switch strings.ToLower(h.Name) {
		case "from", "to", "cc", "bcc", "subject", "message-id", "date", "auto-submitted", "received", "return-path", "x-sieve":
			continue
		}
		hdr(h.Name, h.Value)
	}
	if a.LegacyNotify {
		hdr("Auto-Submitted", "auto-generated (notify)")
	} else {
		hdr("Auto-Submitted", "auto-notified; owner-email=\""+env.Envelope.To+"\"")
	}
	hdr("Precedence", "bulk")
	hdr("X-Priority", prio)
	hdr("Importance", imp)
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	b.WriteString(body)
	raw := []byte(b.String())
	var out []OutgoingMessage
	for _, rc := range rcpts {
		if done != nil {
			done[strings.ToLower(rc)] = true
		}
		out = append(out, OutgoingMessage{From: envFrom, To: rc, Data: raw})
	}
	return out
}

// OutgoingMessage is a message the delivery agent must send.
type OutgoingMessage struct {
	From, To string // envelope; From "" is the null sender
	Data     []byte
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

type validNotifyTest struct{ uris []strv }

func (t *validNotifyTest) eval(r *run) (bool, error) {
	for _, u := range r.expandList(t.uris) {
		if !validNotifyMethod(u) {
			return false, nil
		}
	}
	return true, nil
}

type notifyCapTest struct {
	uri, cap strv
	m        *matcher
}

func (t *notifyCapTest) eval(r *run) (bool, error) {
	uri := r.expand(&t.uri)
	cp := strings.ToLower(r.expand(&t.cap))
	if !validNotifyMethod(uri) {
		return false, nil
	}
	if cp != "online" {
		return false, nil
	}
	return t.m.match(r, []string{"maybe"})
}

// ---- duplicate

type duplicateTest struct {
	handle   *strv
	header   *strv
	uniqueid *strv
	seconds  int64
	last     bool
}

func (t *duplicateTest) eval(r *run) (bool, error) {
	val := ""
	switch {
	case t.uniqueid != nil:
		val = r.expand(t.uniqueid)
	case t.header != nil:
		hv := headerValues(r.headers(), r.expand(t.header))
		if len(hv) == 0 {
			return false, nil
		}
		val = unfold(hv[0])
	default:
		hv := headerValues(r.headers(), "message-id")
		if len(hv) == 0 {
			return false, nil
		}
		val = unfold(hv[0])
	}
	h := ""
	if t.handle != nil {
		h = r.expand(t.handle)
	}
	id := "dup:" + shortHash(h+"\x00"+val)
	period := 7 * 24 * time.Hour
	if t.seconds > 0 {
		// :seconds is capped at sieve_duplicate_max_period (0: no cap), as
		// Pigeonhole does: every delivery stores an id for this long, and a
		// script must not make that years (or wrap past a Duration's range).
		maxP := 7 * 24 * time.Hour
		if v, ok := r.config("sieve_duplicate_max_period"); ok {
			maxP = parsePeriod(v, maxP)
		}
		period = time.Duration(math.MaxInt64)
		if t.seconds <= int64(period/time.Second) {
			period = time.Duration(t.seconds) * time.Second
		}
		if maxP > 0 && period > maxP {
			period = maxP
		}
	} else if v, ok := r.config("sieve_duplicate_default_period"); ok {
		period = parsePeriod(v, period)
	}
	seen := false
	if r.env.Duplicates != nil {
		var err error
		if seen, err = r.env.Duplicates.Check(r.ctx, id); err != nil {
			// Not a script error (that would be the implicit keep): taking
			// it as "not seen" would run the other branch of the script.
			return false, fmt.Errorf("%w: %s: duplicate test: %w", ErrTemporary, r.script.name, err)
		}
	}
	for _, m := range r.st.dupMarks {
		if m.ID == id {
			seen = true
		}
	}
	if !seen || t.last {
		r.st.dupMarks = append(r.st.dupMarks, DuplicateMark{ID: id, Period: period})
	}
	return seen, nil
}

func compileDuplicate(c *compiler, n *testNode, a *argp) test {
	dt := &duplicateTest{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		switch t.tag {
		case "handle":
			s, _ := a.str("handle")
			dt.handle = &s
		case "header":
			if dt.uniqueid != nil || dt.header != nil {
				a.fail(t.pos, "the duplicate test accepts only one of :header and :uniqueid")
				continue
			}
			s, _ := a.str("header")
			dt.header = &s
		case "uniqueid":
			if dt.uniqueid != nil || dt.header != nil {
				a.fail(t.pos, "the duplicate test accepts only one of :header and :uniqueid")
				continue
			}
			s, _ := a.str("uniqueid")
			dt.uniqueid = &s
		case "seconds":
			dt.seconds, _ = a.num("seconds")
		case "last":
			dt.last = true
		default:
			a.unknownTag(t)
		}
	}
	if a.failed {
		return nil
	}
	if dt.header != nil && dt.header.isConst() && !validHeaderName(dt.header.lit) {
		a.fail(n.pos, "duplicate test: invalid header name '%s'", dt.header.lit)
		return nil
	}
	return dt
}

func registerMore() {
	commands["notify"] = cmdDef{exts: []string{"enotify", "notify"}, fn: func(c *compiler, n *cmdNode, a *argp) cmd {
		if !c.has("enotify") {
			return compileLegacyNotify(c, n, a)
		}
		return compileNotify(c, n, a)
	}}
	commands["denotify"] = cmdDef{exts: []string{"notify"}, fn: compileDenotify}
	tests["valid_notify_method"] = testDef{exts: []string{"enotify"}, fn: func(c *compiler, n *testNode, a *argp) test {
		return &validNotifyTest{uris: a.strList("notification uris")}
	}}
	tests["notify_method_capability"] = testDef{exts: []string{"enotify"}, fn: func(c *compiler, n *testNode, a *argp) test {
		var ms matchSpec
		for t, ok := a.tag(); ok; t, ok = a.tag() {
			if !c.stdTag(a, t, &ms, stdMatch) {
				a.unknownTag(t)
			}
		}
		nt := &notifyCapTest{}
		nt.uri, _ = a.str("notification uri")
		nt.cap, _ = a.str("notification capability")
		keys := a.strList("key list")
		nt.m = c.finishMatch(a, &ms, keys)
		if nt.m == nil {
			return nil
		}
		return nt
	}}
	tests["duplicate"] = testDef{exts: []string{"duplicate", "vnd.dovecot.duplicate"}, fn: compileDuplicate}
	commands["vacation"] = cmdDef{exts: []string{"vacation"}, fn: compileVacation}
	tests["body"] = testDef{exts: []string{"body"}, fn: compileBody}
	tests["date"] = testDef{exts: []string{"date"}, fn: compileDate}
	tests["currentdate"] = testDef{exts: []string{"date"}, fn: compileDate}
	commands["addheader"] = cmdDef{exts: []string{"editheader"}, fn: compileAddheader}
	commands["deleteheader"] = cmdDef{exts: []string{"editheader"}, fn: compileDeleteheader}
	commands["foreverypart"] = cmdDef{exts: []string{"foreverypart"}, block: true, fn: compileForeverypart}
	commands["break"] = cmdDef{exts: []string{"foreverypart"}, fn: compileBreak}
	commands["extracttext"] = cmdDef{exts: []string{"extracttext"}, fn: compileExtracttext}
}
