package rules

import (
	"context"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/spam/message"
)

// Context is what rules see of one message. Views are computed once, lazily.
type Context struct {
	Msg *message.Message
	Now time.Time
	// Data is the caller's per-scan data for its eval functions.
	Data any

	paras    []string
	rawLines []string
	lower    [3]string // case-folded body, rawbody, full for prefilters
	lowerOK  [3]bool
	lowLines [2][]string // case-folded body paragraphs and rawbody lines
	full     string
	fullDone bool
	uris     []string // uriForms
}

// Hit is a rule that matched.
type Hit struct {
	Rule  *Rule
	Count int
}

// Body returns the rendered body as SpamAssassin's body rules see it: the
// Subject, then each paragraph of visible text with line breaks and runs of
// white space collapsed to single spaces.
func (c *Context) Body() []string {
	if c.paras != nil {
		return c.paras
	}
	c.paras = []string{c.Msg.Subject()}
	for _, para := range strings.Split(c.Msg.Text, "\n\n") {
		p := strings.Join(strings.Fields(para), " ")
		if p != "" {
			c.paras = append(c.paras, p)
		}
	}
	return c.paras
}

// RawBody returns the lines of the decoded text parts before HTML rendering.
func (c *Context) RawBody() []string {
	if c.rawLines != nil {
		return c.rawLines
	}
	c.rawLines = []string{}
	for _, p := range c.Msg.Parts {
		if p.Source != "" {
			c.rawLines = append(c.rawLines, strings.Split(p.Source, "\n")...)
		}
	}
	return c.rawLines
}

// Full returns the raw scanned message.
func (c *Context) Full() string {
	if !c.fullDone {
		c.full = c.Msg.RawHeader + "\n" + c.Msg.RawBody
		c.fullDone = true
	}
	return c.full
}

// lowered returns the case-folded (foldCase) text of a body-like kind,
// computed once.
func (c *Context) lowered(k Kind) string {
	i := map[Kind]int{KindBody: 0, KindRawBody: 1, KindFull: 2}[k]
	if !c.lowerOK[i] {
		switch k {
		case KindBody:
			c.lower[i] = foldCase(strings.Join(c.Body(), "\n"))
		case KindRawBody:
			c.lower[i] = foldCase(strings.Join(c.RawBody(), "\n"))
		default:
			c.lower[i] = foldCase(c.Full())
		}
		c.lowerOK[i] = true
	}
	return c.lower[i]
}

// loweredLines returns the case-folded paragraphs (body) or lines (rawbody),
// index-aligned with Body() or RawBody(): folding never adds or removes a
// line break.
func (c *Context) loweredLines(k Kind) []string {
	i := 0
	if k == KindRawBody {
		i = 1
	}
	if c.lowLines[i] == nil {
		c.lowLines[i] = strings.Split(c.lowered(k), "\n")
	}
	return c.lowLines[i]
}

// HeaderValue returns what a header rule tests for field with modifier
// ("raw", "addr", "name" or ""), and whether the field exists.
func (c *Context) HeaderValue(field, modif string) (string, bool) {
	h := c.Msg.Header
	var names []string
	switch field {
	case "ALL":
		return strings.TrimSuffix(c.Msg.RawHeader, "\n"), true
	case "ToCc":
		names = []string{"To", "Cc"}
	case "MESSAGEID":
		names = []string{"Message-Id", "Resent-Message-Id", "X-Message-Id"}
	case "EnvelopeFrom":
		names = []string{"Return-Path", "X-Envelope-From"}
	default:
		names = []string{field}
	}
	var vals []string
	for _, n := range names {
		if modif == "raw" {
			vals = append(vals, h.RawValues(n)...)
		} else {
			vals = append(vals, h.Values(n)...)
		}
	}
	if len(vals) == 0 {
		return "", false
	}
	if modif == "addr" || modif == "name" {
		for i, v := range vals {
			vals[i] = addrPart(v, modif == "addr")
		}
	}
	return strings.Join(vals, "\n"), true
}

// addrPart extracts the first address or display name of an address header,
// leniently (spam rarely parses).
func addrPart(v string, addr bool) string {
	if a, err := mail.ParseAddress(v); err == nil {
		if addr {
			return a.Address
		}
		return a.Name
	}
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if addr {
			a := v[i+1:]
			a, _, _ = strings.Cut(a, ">")
			return strings.TrimSpace(a)
		}
		return strings.Trim(strings.TrimSpace(v[:i]), `"`)
	}
	if addr {
		return strings.TrimSpace(v)
	}
	return ""
}

// Run evaluates every rule against c and returns the hits, in rule order
// (non-meta first). ctx cancellation stops between rules.
func (s *Set) Run(ctx context.Context, c *Context) []Hit {
	if s == nil {
		return nil
	}
	hits := map[string]float64{}
	var out []Hit
	for i, r := range s.rules {
		if i%16 == 0 && ctx.Err() != nil {
			return out
		}
		if n := r.match(c); n > 0 {
			hits[r.Name] = float64(n)
			out = append(out, Hit{r, n})
		}
	}
	for _, r := range s.metas {
		if v := r.meta.eval(hits); v != 0 {
			hits[r.Name] = 1
			out = append(out, Hit{r, 1})
		}
	}
	return out
}

func (r *Rule) match(c *Context) int {
	if r.eval != nil {
		return b2i(r.eval(c, r.args))
	}
	if r.pre != nil && !r.pre.mayMatch(c.lowered(r.Kind)) {
		return 0
	}
	limit := r.hitLimit()
	count := func(lines, low []string) int {
		n := 0
		for i, l := range lines {
			// The prefilter holds per line as well: skip the regex on the
			// paragraphs without any of the required literals.
			if r.pre != nil && len(low) == len(lines) && !r.pre.mayMatch(low[i]) {
				continue
			}
			if n += r.hits(l, limit-n); n >= limit {
				break
			}
		}
		return n
	}
	switch r.Kind {
	case KindHeader:
		v, ok := c.HeaderValue(r.header, r.modif)
		if r.exists {
			return b2i(ok)
		}
		if !ok && r.hasUnset {
			v = r.unset
		}
		if r.negate {
			return b2i(!r.re.MatchString(v))
		}
		return r.hits(v, limit)
	case KindBody:
		return count(c.Body(), c.loweredLines(KindBody))
	case KindRawBody:
		return count(c.RawBody(), c.loweredLines(KindRawBody))
	case KindFull:
		return r.hits(c.Full(), limit)
	case KindURI:
		return count(c.uriForms(), nil)
	}
	return 0
}

// maxMultiple bounds the hits of a multiple rule without maxhits, so one
// pattern on a huge body costs a bounded amount.
const maxMultiple = 1000

// hitLimit is how many hits count: 1, or for tflags multiple the maxhits=N
// value (SpamAssassin's limit), else maxMultiple.
func (r *Rule) hitLimit() int {
	if !r.Has("multiple") {
		return 1
	}
	for _, f := range r.TFlags {
		if v, ok := strings.CutPrefix(f, "maxhits="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return min(n, maxMultiple)
			}
		}
	}
	return maxMultiple
}

// hits counts the pattern's matches in s, at most limit (≥ 1 matches are
// needed only when limit > 1).
func (r *Rule) hits(s string, limit int) int {
	if limit <= 1 {
		return b2i(limit == 1 && r.re.MatchString(s))
	}
	return len(r.re.FindAllStringIndex(s, limit))
}

// uriForms returns the URIs a uri rule tests: each as written and the
// canonical forms SpamAssassin adds (uri_list_canonicalize), so a rule
// written for "http://host/" also sees "www.host" and %-encoded hosts.
func (c *Context) uriForms() []string {
	if c.uris != nil {
		return c.uris
	}
	seen := map[string]bool{}
	c.uris = []string{}
	add := func(u string) {
		if u != "" && !seen[u] {
			seen[u] = true
			c.uris = append(c.uris, u)
		}
	}
	for _, u := range c.Msg.URIs {
		add(u.Raw)
		for _, f := range canonicalURIs(u.Raw) {
			add(f)
		}
	}
	return c.uris
}

var (
	schemeSlashes  = regexp.MustCompile(`(?i)^(https?:)/{0,2}`)
	hasScheme      = regexp.MustCompile(`(?i)^[-_a-z0-9]+:`)
	queryAfterHost = regexp.MustCompile(`(?i)^(https?://[^/?]+)\?`)
	hostPart       = regexp.MustCompile(`(?i)^(https?://)([^/]+?)((?::\d*)?/.*)?$`)
	redirectTo     = regexp.MustCompile(`(?i)(https?:/{0,2}.+)$`)
)

// canonicalURIs follows SpamAssassin's uri_list_canonicalize: backslashes
// read as slashes, "http:host" given its slashes, %-escapes decoded,
// scheme-less "www."/"ftp." given http:// or ftp://, a query right after the
// host given its "/", then the form without user info, without trailing
// junk in the host, and one level of redirect target.
func canonicalURIs(raw string) []string { return canonical(raw, true) }

func canonical(raw string, redirects bool) []string {
	u := strings.TrimSpace(strings.NewReplacer("\n", "", "\r", "").Replace(raw))
	low := strings.ToLower(u)
	if strings.HasPrefix(low, "mailto:") || strings.Contains(strings.SplitN(u, ":", 2)[0], "@") {
		return nil
	}
	var out []string
	n := strings.ReplaceAll(u, "\\", "/")
	n = schemeSlashes.ReplaceAllString(n, "${1}//")
	n = percentDecode(n)
	if !hasScheme.MatchString(n) {
		if strings.HasPrefix(strings.ToLower(n), "ftp.") {
			n = "ftp://" + n
		} else {
			n = "http://" + n
		}
	}
	n = queryAfterHost.ReplaceAllString(n, "${1}/?")
	if n != u {
		out = append(out, n)
	}
	if m := hostPart.FindStringSubmatch(n); m != nil {
		proto, host, rest := m[1], m[2], m[3]
		if i := strings.LastIndexByte(host, '@'); i >= 0 {
			host = host[i+1:]
			out = append(out, proto+host+rest)
		}
		if t := strings.TrimRightFunc(host, func(r rune) bool { return !isAlnum(r) }); t != host {
			out = append(out, proto+t+rest)
		}
		// http://1249763353/ and http://0x4a.0x7d.0xe0.0x19/ are the
		// dotted quad a browser connects to.
		if ip, ok := message.CanonicalIPv4(host); ok && ip != host {
			out = append(out, proto+ip+rest)
		}
		// One level only: a chain of redirects must not cost quadratic time.
		if rd := redirectTo.FindStringSubmatch(rest); rd != nil && redirects {
			out = append(out, rd[1])
			out = append(out, canonical(rd[1], false)...)
		}
	}
	return out
}

func isAlnum(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

// percentDecode decodes every %XX escape (invalid ones stay as written).
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
