package sieve

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"mime"
	"strings"
	"time"
	"unicode/utf8"
)

// vacation (RFC 5230) and vacation-seconds (RFC 6131)

type vacationCmd struct {
	days, seconds int64
	hasDays       bool
	hasSeconds    bool
	subject       *strv
	from          *strv
	addresses     []strv
	mime          bool
	handle        *strv
	reason        strv
}

func compileVacation(c *compiler, n *cmdNode, a *argp) cmd {
	vc := &vacationCmd{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		switch t.tag {
		case "days":
			if vc.hasSeconds || vc.hasDays {
				a.fail(t.pos, "the vacation command accepts only one of :days or :seconds")
				continue
			}
			vc.days, _ = a.num("days")
			vc.hasDays = true
		case "seconds":
			if !c.has("vacation-seconds") {
				a.unknownTag(t)
				continue
			}
			if vc.hasSeconds || vc.hasDays {
				a.fail(t.pos, "the vacation command accepts only one of :days or :seconds")
				continue
			}
			vc.seconds, _ = a.num("seconds")
			vc.hasSeconds = true
		case "subject":
			s, _ := a.str("subject")
			vc.subject = &s
		case "from":
			s, ok := a.str("from")
			if ok && s.isConst() {
				if _, ok := normalizeAddress(s.lit); !ok {
					a.fail(t.pos, "specified :from address '%s' is invalid for vacation action", s.lit)
				}
			}
			vc.from = &s
		case "addresses":
			vc.addresses = a.strList("addresses")
		case "mime":
			vc.mime = true
		case "handle":
			s, _ := a.str("handle")
			vc.handle = &s
		default:
			a.unknownTag(t)
		}
	}
	vc.reason, _ = a.str("reason")
	if a.failed {
		return nil
	}
	return vc
}

func parsePeriod(s string, def time.Duration) time.Duration {
	s = strings.TrimSpace(s)
	if s == "" {
		return def
	}
	unit := time.Second
	switch s[len(s)-1] {
	case 's':
		s = s[:len(s)-1]
	case 'm':
		unit, s = time.Minute, s[:len(s)-1]
	case 'h':
		unit, s = time.Hour, s[:len(s)-1]
	case 'd':
		unit, s = 24*time.Hour, s[:len(s)-1]
	}
	n := atoiDefault(s, -1)
	if n < 0 {
		return def
	}
	return time.Duration(n) * unit
}

func (c *vacationCmd) exec(r *run) error {
	a := &Action{Type: "vacation", Reason: r.expand(&c.reason), Mime: c.mime}
	if c.subject != nil {
		a.Subject = r.expand(c.subject)
	}
	if c.from != nil {
		f := r.expand(c.from)
		if _, ok := normalizeAddress(f); !ok {
			return r.runtimeErr("specified :from address '%s' is invalid for vacation action", f)
		}
		a.From = f
	}
	a.Addresses = r.expandList(c.addresses)
	minP, _ := r.config("sieve_vacation_min_period")
	maxP, _ := r.config("sieve_vacation_max_period")
	defP, _ := r.config("sieve_vacation_default_period")
	// In seconds, not time.Duration: ":days 999999" (answer each sender
	// once) is past what a Duration holds and would wrap around.
	minS := int64(parsePeriod(minP, 24*time.Hour) / time.Second)
	maxS := int64(parsePeriod(maxP, 60*24*time.Hour) / time.Second)
	period := int64(parsePeriod(defP, 7*24*time.Hour) / time.Second)
	if c.hasDays {
		period = math.MaxInt64
		if c.days <= math.MaxInt64/86400 {
			period = c.days * 86400
		}
	} else if c.hasSeconds {
		period = c.seconds
	}
	if period < minS && !(c.hasSeconds && c.seconds == 0) {
		period = minS
	}
	if maxS > 0 && period > maxS {
		period = maxS
	}
	a.Seconds = period
	if c.handle != nil {
		a.Handle = r.expand(c.handle)
	} else {
		h := sha256.Sum256([]byte(a.Subject + "\x00" + a.From + "\x00" + a.Reason + "\x00" + fmt.Sprint(a.Mime)))
		a.Handle = hex.EncodeToString(h[:8])
	}
	for _, o := range r.st.actions {
		if o.Type == "reject" || o.Type == "ereject" {
			return r.runtimeErr("vacation action conflicts with earlier %s action", o.Type)
		}
	}
	return r.addAction(a, false)
}

// VacationReply builds the auto-reply for a vacation action, applying
// RFC 5230 / Pigeonhole rules (no reply to the null sender, mailing lists,
// bulk or auto-submitted mail, system addresses, own addresses, or when
// none of the user's addresses is in the recipient headers). ok is false
// (with a reason) when no reply must be sent. The reply has the null
// envelope sender and must be sent to envelope recipient to.
func VacationReply(env *Env, a *Action) (out OutgoingMessage, ok bool, reason string) {
	cfg := func(k string) string {
		if env.Config == nil {
			return ""
		}
		return env.Config[k]
	}
	yes := func(k string) bool {
		v := strings.ToLower(cfg(k))
		return v == "yes" || v == "true" || v == "1"
	}
	m := env.Message
	hs := m.headers
	sender := strings.TrimSpace(env.Envelope.From)
	sender = strings.TrimSuffix(strings.TrimPrefix(sender, "<"), ">")
	if sender == "" {
		return out, false, "null envelope sender"
	}
	sp := parseOneAddr(sender)
	if !sp.ok {
		return out, false, "invalid envelope sender"
	}
	sl := strings.ToLower(sp.local)
	if sl == "mailer-daemon" || sl == "listserv" || sl == "majordomo" || strings.HasPrefix(sl, "owner-") || strings.HasSuffix(sl, "-request") {
		return out, false, "system address"
	}
	for _, h := range hs {
		n := strings.ToLower(h.Name)
		v := strings.ToLower(strings.TrimSpace(unfold(h.Value)))
		switch {
		case n == "list-id" || n == "list-owner" || n == "list-subscribe" || n == "list-post" || n == "list-unsubscribe" || n == "list-help" || n == "list-archive":
			return out, false, "mailing list"
		case n == "auto-submitted" && v != "no":
			return out, false, "auto-submitted"
		case n == "precedence" && (v == "bulk" || v == "junk" || v == "list"):
			return out, false, "bulk"
		case n == "x-auto-response-suppress":
			for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
				if f == "all" || f == "oof" {
					return out, false, "auto response suppressed"
				}
			}
		}
	}
	var mine []string
	if env.Envelope.To != "" {
		mine = append(mine, env.Envelope.To)
	}
	if yes("sieve_vacation_use_original_recipient") && env.Envelope.OrigTo != "" {
		mine = append(mine, env.Envelope.OrigTo)
	}
	if u := cfg("sieve_user_email"); u != "" {
		mine = append(mine, u)
	}
	mine = append(mine, a.Addresses...)
	sameAddr := func(x, y string) bool {
		px, py := parseOneAddr(strings.TrimSpace(x)), parseOneAddr(strings.TrimSpace(y))
		if !px.ok || !py.ok {
			return strings.EqualFold(strings.TrimSpace(x), strings.TrimSpace(y))
		}
		return px.local == py.local && strings.EqualFold(px.domain, py.domain) || strings.EqualFold(px.local+"@"+px.domain, py.local+"@"+py.domain)
	}
	for _, x := range mine {
		if sameAddr(x, sender) {
			return out, false, "own address"
		}
	}
	if a.From != "" {
		if sameAddr(a.From, sender) {
			return out, false, "own address"
		}
	}
	// find which of my addresses the message was sent to
	found := ""
	for _, hn := range []string{"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"} {
		for _, h := range hs {
			if !strings.EqualFold(h.Name, hn) {
				continue
			}
			for _, p := range parseAddressList(h.Value) {
				if !p.ok {
					continue
				}
				for _, x := range mine {
					if sameAddr(p.local+"@"+p.domain, x) {
						if found == "" {
							found = p.local + "@" + p.domain
						}
					}
				}
			}
		}
	}
	if found == "" && !yes("sieve_vacation_dont_check_recipient") && len(mine) > 0 {
		return out, false, "implicitly delivered message"
	}
	// reply
	var b strings.Builder
	hdr := func(n, v string) { writeField(&b, n, v) }
	hdr("X-Sieve", "dovetail Sieve")
	// Unique per reply (RFC 5322 section 3.6.4): not the handle itself, which
	// the script may build from message text and which every reply with it
	// shares.
	var rnd [8]byte
	rand.Read(rnd[:])
	hdr("Message-ID", fmt.Sprintf("<dovetail-vacation-%s@%s>", hex.EncodeToString(rnd[:]), domainOf(env.Envelope.To)))
	now := time.Now()
	if env.Now != nil {
		now = env.Now()
	}
	hdr("Date", now.Format(time.RFC1123Z))
	from := a.From
	if from == "" {
		from = found
		if from == "" {
			from = env.Envelope.To
		}
		if from == "" {
			from = cfg("sieve_user_email")
		}
	}
	if a.From != "" {
		hdr("From", encodeAddrHeader(a.From))
	} else if from != "" {
		hdr("From", encodeAddrHeader(from))
	}
	// To: the matching header address with its display name
	toHdr := "<" + sender + ">"
	ignoreEnv := yes("sieve_vacation_to_header_ignore_envelope")
	for _, hn := range []string{"from", "sender", "resent-from", "resent-sender", "return-path"} {
		if ignoreEnv && hn != "sender" && hn != "from" {
			continue
		}
		hv := headerValues(hs, hn)
		done := false
		for _, v := range hv {
			for _, p := range parseAddressList(v) {
				if !p.ok {
					continue
				}
				if ignoreEnv || sameAddr(p.local+"@"+p.domain, sender) {
					toHdr = formatAddr(p)
					if ignoreEnv {
						sender = p.local + "@" + p.domain
					}
					done = true
					break
				}
			}
			if done {
				break
			}
		}
		if done {
			break
		}
		if ignoreEnv && hn == "from" {
			continue
		}
	}
	if ignoreEnv {
		// prefer Sender over From
		for _, hn := range []string{"sender", "from"} {
			if hv := headerValues(hs, hn); len(hv) > 0 {
				if ps := parseAddressList(hv[0]); len(ps) > 0 && ps[0].ok {
					toHdr = formatAddr(ps[0])
					sender = ps[0].local + "@" + ps[0].domain
					break
				}
			}
		}
	}
	hdr("To", toHdr)
	subject := a.Subject
	if subject == "" {
		orig := ""
		if v := headerValues(hs, "subject"); len(v) > 0 {
			orig = decodeHeader(v[0])
		}
		tmpl := cfg("sieve_vacation_default_subject_template")
		def := cfg("sieve_vacation_default_subject")
		switch {
		case orig == "" && def != "":
			subject = def
		case orig == "":
			subject = "Automated reply"
		case tmpl != "":
			subject = strings.NewReplacer("%{subject}", orig, "%$", orig, "%%", "%").Replace(tmpl)
		default:
			subject = "Auto: " + orig
		}
		maxCP := atoiDefault(cfg("sieve_vacation_max_subject_codepoints"), 256)
		if maxCP > 0 && utf8.RuneCountInString(subject) > maxCP {
			rs := []rune(subject)
			subject = string(rs[:maxCP]) + "\u2026"
		}
	}
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	if v := headerValues(hs, "message-id"); len(v) > 0 {
		id := strings.TrimSpace(unfold(v[0]))
		hdr("In-Reply-To", id)
		refs := ""
		if rv := headerValues(hs, "references"); len(rv) > 0 {
			refs = strings.Join(strings.Fields(unfold(rv[0])), " ")
		} else if iv := headerValues(hs, "in-reply-to"); len(iv) > 0 {
			refs = strings.Join(strings.Fields(unfold(iv[0])), " ")
		}
		if refs != "" {
			hdr("References", refs+" "+id)
		} else {
			hdr("References", id)
		}
	}
	hdr("Auto-Submitted", "auto-replied (vacation)")
	hdr("Precedence", "bulk")
	hdr("MIME-Version", "1.0")
	if a.Mime {
		b.WriteString(strings.TrimLeft(a.Reason, "\r\n"))
	} else {
		hdr("Content-Type", "text/plain; charset=utf-8")
		hdr("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n")
		b.WriteString(a.Reason)
	}
	out = OutgoingMessage{To: sender, Data: []byte(b.String())}
	if yes("sieve_vacation_send_from_recipient") {
		out.From = env.Envelope.To
	}
	return out, true, ""
}

func domainOf(a string) string {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return a[i+1:]
	}
	return "localhost"
}

// formatAddr renders an address for a header field of an outgoing message.
// The display name is decoded (it comes RFC 2047-encoded from the original
// header) and so is encoded or quoted again here: written out decoded, a name
// holding a line break added header fields of the sender's choosing to the
// reply.
func formatAddr(p parsedAddr) string {
	addr := p.local + "@" + p.domain
	raw := strings.TrimSpace(p.raw)
	if i := strings.LastIndexByte(raw, '<'); i > 0 {
		name := strings.TrimSpace(raw[:i])
		if name != "" {
			if len(name) >= 2 && name[0] == '"' && name[len(name)-1] == '"' {
				name = unquote(name[1 : len(name)-1])
			}
			return encodePhrase(decodeHeader(name)) + " <" + addr + ">"
		}
	}
	return "<" + addr + ">"
}

// encodePhrase makes s a display-name phrase: a quoted string, or base64
// encoded-words (safe in a phrase whatever s holds) when s is not ASCII.
// Control characters become spaces.
func encodePhrase(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return mime.BEncoding.Encode("utf-8", s)
		}
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func encodeAddrHeader(s string) string {
	ps := parseAddressList(s)
	if len(ps) == 1 && ps[0].ok {
		return formatAddr(ps[0])
	}
	// not one mailbox: at least no line break may end the field early
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
