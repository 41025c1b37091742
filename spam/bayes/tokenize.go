package bayes

import (
	"net"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dovetail-mail/dovetail/spam/message"
)

// MaxTokens bounds the distinct tokens taken from one message; the body text
// gets at most three quarters of them.
const MaxTokens = 8000

// Tokens returns the distinct tokens of msg. Prefixes keep the sources apart
// (a word in the Subject is not the same evidence as in the body):
//
//	word          body word (lower case, 3..20 bytes; longer → "sk:<first 8>")
//	w:a b         body word bigram (rspamd-like two-word window)
//	SUBJECT:w     Subject word, f:/fd:/fn: From address/domain/name word,
//	rt:           Reply-To domain, mid: Message-ID domain, xm: mailer,
//	hn:           header name present, rcv:/rip: Received host / IP prefix,
//	ct:/cs:/cte:  MIME type / charset / transfer encoding per part,
//	att:          attachment extension, h:TAG HTML tag present,
//	u:/ud:        URI host / its last two labels, a:ANOMALY parse anomaly.
//
// CJK runs (Han, Hiragana, Katakana, Hangul) have no spaces: they become
// character bigrams. Dates and times are never tokens (a 2002 corpus must not
// teach "old means spam").
func Tokens(msg *message.Message) []string { return Tokenizer{}.Tokens(msg) }

// Tokenizer holds what tokenizing needs to know about this installation.
type Tokenizer struct {
	// AuthservIDs name this host in Authentication-Results (the milter's
	// authserv_id): such fields were added by us, as the X-Spam-* ones were.
	AuthservIDs []string
}

// Tokens returns the distinct tokens of msg, as the package function does,
// leaving out the fields this installation added (Own).
func (tz Tokenizer) Tokens(msg *message.Message) []string {
	// The body text may take only part of the budget: padding it with
	// random words must not push out the sender, Received, MIME and URI
	// tokens that follow, which the padding cannot change.
	t := &tokenizer{seen: map[string]struct{}{}, tz: tz, limit: MaxTokens - MaxTokens/4}
	t.text("", msg.Text, true)
	t.limit = MaxTokens
	t.text("SUBJECT:", msg.Subject(), true)
	t.headers(msg)
	for _, p := range msg.Parts {
		t.add("ct:" + p.ContentType)
		if p.Charset != "" {
			t.add("cs:" + p.Charset)
		}
		if p.Encoding != "" {
			t.add("cte:" + p.Encoding)
		}
		if p.Filename != "" {
			ext := strings.ToLower(p.Filename)
			if i := strings.LastIndexByte(ext, '.'); i >= 0 {
				ext = ext[i+1:]
			}
			t.add("att:" + trunc(ext, 10))
		}
	}
	for tag := range msg.HTMLTags {
		t.add("h:" + trunc(tag, 12))
	}
	for attr := range msg.HTMLAttrs {
		t.add("ha:" + trunc(attr, 40))
	}
	for _, u := range msg.URIs {
		if u.Host == "" {
			continue
		}
		t.add("u:" + trunc(u.Host, 60))
		t.add("ud:" + lastLabels(u.Host, 2))
		t.uriPath(u.Raw)
		if u.HTML && u.Shown != "" && strings.Contains(strings.ToLower(u.Shown), u.Host) {
			t.add("u:shown-matches")
		}
	}
	for a := range msg.Anomalies {
		t.add("a:" + a)
	}
	return t.out
}

// uriPath adds the URI scheme, path words and script extension: spam links
// have shapes (cgi-bin, ?id=, click.php) that survive changing hosts.
func (t *tokenizer) uriPath(raw string) {
	low := strings.ToLower(raw)
	scheme, rest, ok := strings.Cut(low, "://")
	if !ok {
		return
	}
	t.add("us:" + trunc(scheme, 10))
	_, path, _ := strings.Cut(rest, "/")
	path, query, hasQuery := strings.Cut(path, "?")
	if hasQuery {
		t.add("uq:" + bucket(strings.Count(query, "&")+1))
	}
	for i, seg := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '.' || r == '-' || r == '_' || r == '=' }) {
		if i >= 6 {
			break
		}
		if len(seg) >= 2 && len(seg) <= 20 {
			t.add("up:" + seg)
		}
	}
}

type tokenizer struct {
	seen  map[string]struct{}
	out   []string
	tz    Tokenizer
	limit int // tokens taken so far may not exceed it (≤ MaxTokens)
}

func (t *tokenizer) add(tok string) {
	if len(t.out) >= t.limit {
		return
	}
	if _, ok := t.seen[tok]; ok {
		return
	}
	t.seen[tok] = struct{}{}
	t.out = append(t.out, tok)
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isCJK(r rune) bool {
	return unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r) ||
		unicode.Is(unicode.Hangul, r) || r == 'ー'
}

// trimChars are stripped from both ends of a word.
const trimChars = ".,;:!?\"'()[]<>{}*=|`~_-/\\#%^&+"

// text tokenizes free text: words, word bigrams (when bigrams) and CJK
// character bigrams.
func (t *tokenizer) text(prefix, s string, bigrams bool) {
	prev := ""
	var cjk []rune
	flushCJK := func() {
		switch len(cjk) {
		case 0:
		case 1:
			t.add(prefix + string(cjk))
		default:
			for i := 0; i+1 < len(cjk); i++ {
				t.add(prefix + string(cjk[i:i+2]))
			}
		}
		cjk = cjk[:0]
	}
	for _, field := range strings.Fields(s) {
		if len(t.out) >= t.limit {
			return
		}
		// Split the field into CJK runs and the rest.
		start := 0
		for i, r := range field {
			if isCJK(r) {
				if i > start {
					prev = t.word(prefix, field[start:i], prev, bigrams)
				}
				cjk = append(cjk, r)
				start = i + utf8.RuneLen(r)
				continue
			}
			if len(cjk) > 0 {
				flushCJK()
				prev = ""
			}
			// CJK punctuation separates runs too.
			if unicode.IsPunct(r) && r > 0x2000 {
				if i > start {
					prev = t.word(prefix, field[start:i], prev, bigrams)
				}
				start = i + utf8.RuneLen(r)
			}
		}
		flushCJK()
		if start < len(field) {
			prev = t.word(prefix, field[start:], prev, bigrams)
		}
	}
}

func (t *tokenizer) word(prefix, w, prev string, bigrams bool) string {
	w = strings.Trim(w, trimChars)
	if len(w) < 3 {
		return prev
	}
	lw := strings.ToLower(w)
	if len(lw) > 20 {
		// Long strings (hashes, encoded junk) are mostly unique: keep a coarse class.
		t.add(prefix + "sk:" + trunc(lw, 8))
		return ""
	}
	t.add(prefix + lw)
	// Shouting is evidence of its own.
	if len(w) >= 4 && w == strings.ToUpper(w) && strings.ToLower(w) != w {
		t.add(prefix + "UC:" + lw)
	}
	if bigrams && prev != "" {
		t.add(prefix + "w:" + prev + " " + lw)
	}
	return lw
}

var (
	receivedFrom = regexp.MustCompile(`(?i)\bfrom\s+([A-Za-z0-9.-]+)`)
	receivedIP   = regexp.MustCompile(`\[?(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\]?`)
	mailerClean  = regexp.MustCompile(`[0-9.]+|\(.*\)`)
)

// headerNamesNoise are header names too common or too local to carry evidence.
var headerNamesNoise = map[string]bool{"received": true, "date": true, "subject": true, "from": true,
	"to": true, "message-id": true, "delivered-to": true, "return-path": true}

func (t *tokenizer) headers(msg *message.Message) {
	h := msg.Header
	for _, f := range h {
		n := strings.ToLower(f.Name)
		if t.tz.Own(f.Name, f.Raw) {
			continue
		}
		if !headerNamesNoise[n] {
			t.add("hn:" + trunc(n, 30))
		}
	}
	if from := h.Get("From"); from != "" {
		addr, name := splitAddr(from)
		if addr != "" {
			t.add("f:" + trunc(addr, 60))
			if _, d, ok := strings.Cut(addr, "@"); ok {
				t.add("fd:" + trunc(d, 60))
				t.add("fd2:" + lastLabels(d, 2))
			}
		}
		t.text("fn:", name, false)
		if name == "" {
			t.add("fn:none")
		}
	}
	if rt := h.Get("Reply-To"); rt != "" {
		addr, _ := splitAddr(rt)
		_, d, _ := strings.Cut(addr, "@")
		t.add("rt:" + trunc(d, 60))
	}
	if mid := h.Get("Message-Id"); mid != "" {
		_, d, ok := strings.Cut(mid, "@")
		if ok {
			t.add("mid:" + trunc(strings.TrimRight(d, "> "), 60))
		} else {
			t.add("mid:nodomain")
		}
	} else {
		t.add("mid:none")
	}
	for _, name := range []string{"X-Mailer", "User-Agent"} {
		if v := h.Get(name); v != "" {
			t.add("xm:" + trunc(strings.Join(strings.Fields(strings.ToLower(mailerClean.ReplaceAllString(v, " "))), " "), 40))
		}
	}
	for _, name := range []string{"To", "Cc"} {
		v := h.Get(name)
		if v == "" {
			continue
		}
		n := strings.Count(v, "@")
		t.add(name + ":count" + bucket(n))
		if strings.Contains(v, "undisclosed") {
			t.add(name + ":undisclosed")
		}
	}
	for _, rcv := range h.Values("Received") {
		if m := receivedFrom.FindStringSubmatch(rcv); m != nil {
			t.add("rcv:" + trunc(strings.ToLower(m[1]), 60))
		}
		for _, ip := range receivedIP.FindAllStringSubmatch(rcv, 4) {
			a := net.ParseIP(ip[1]).To4()
			if a == nil || a[0] == 127 || a[0] == 10 || a[0] == 192 && a[1] == 168 {
				continue
			}
			t.add("rip:" + a.Mask(net.CIDRMask(16, 32)).String())
			t.add("rip:" + a.Mask(net.CIDRMask(24, 32)).String())
		}
	}
}

// Own reports whether a header field is one this installation adds to the
// mail it scans: every X-Spam-* field (the milter strips inbound ones, so
// any in a delivered message are ours) and Authentication-Results naming
// one of AuthservIDs. Learning a Junk folder must not teach the filter its
// own earlier verdict, as SpamAssassin strips its markup before learning.
func (tz Tokenizer) Own(name, value string) bool {
	if len(name) >= 7 && strings.EqualFold(name[:7], "X-Spam-") {
		return true
	}
	if len(tz.AuthservIDs) == 0 || !strings.EqualFold(name, "Authentication-Results") {
		return false
	}
	id := message.AuthservID(value)
	for _, ours := range tz.AuthservIDs {
		if ours != "" && strings.EqualFold(id, ours) {
			return true
		}
	}
	return false
}

func bucket(n int) string {
	switch {
	case n <= 1:
		return "1"
	case n <= 3:
		return "2-3"
	case n <= 10:
		return "4-10"
	}
	return "many"
}

func splitAddr(v string) (addr, name string) {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		a := v[i+1:]
		a, _, _ = strings.Cut(a, ">")
		return strings.ToLower(strings.TrimSpace(a)), strings.Trim(strings.TrimSpace(v[:i]), `"' `)
	}
	if i := strings.IndexByte(v, '('); i >= 0 {
		n := v[i+1:]
		n, _, _ = strings.Cut(n, ")")
		return strings.ToLower(strings.TrimSpace(v[:i])), n
	}
	return strings.ToLower(strings.TrimSpace(v)), ""
}

func lastLabels(host string, n int) string {
	parts := strings.Split(host, ".")
	if len(parts) <= n {
		return host
	}
	return strings.Join(parts[len(parts)-n:], ".")
}
