package rules

import (
	"context"
	"net/mail"
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
	lower    [3]string // lower-cased body, rawbody, full for prefilters
	lowerOK  [3]bool
	lowLines [2][]string // lower-cased body paragraphs and rawbody lines
	full     string
	fullDone bool
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

// lowered returns the lower-cased text of a body-like kind, computed once.
func (c *Context) lowered(k Kind) string {
	i := map[Kind]int{KindBody: 0, KindRawBody: 1, KindFull: 2}[k]
	if !c.lowerOK[i] {
		switch k {
		case KindBody:
			c.lower[i] = strings.ToLower(strings.Join(c.Body(), "\n"))
		case KindRawBody:
			c.lower[i] = strings.ToLower(strings.Join(c.RawBody(), "\n"))
		default:
			c.lower[i] = strings.ToLower(c.Full())
		}
		c.lowerOK[i] = true
	}
	return c.lower[i]
}

// loweredLines returns the lower-cased paragraphs (body) or lines (rawbody),
// index-aligned with Body() or RawBody(): lower-casing never adds or removes
// a line break.
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
	multiple := r.Has("multiple")
	count := func(lines, low []string) int {
		n := 0
		for i, l := range lines {
			// The prefilter holds per line as well: skip the regex on the
			// paragraphs without any of the required literals.
			if r.pre != nil && len(low) == len(lines) && !r.pre.mayMatch(low[i]) {
				continue
			}
			if multiple {
				n += len(r.re.FindAllStringIndex(l, 20))
			} else if r.re.MatchString(l) {
				return 1
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
		m := r.re.MatchString(v)
		if r.negate {
			return b2i(!m)
		}
		return b2i(m)
	case KindBody:
		return count(c.Body(), c.loweredLines(KindBody))
	case KindRawBody:
		return count(c.RawBody(), c.loweredLines(KindRawBody))
	case KindFull:
		return b2i(r.re.MatchString(c.Full()))
	case KindURI:
		for _, u := range c.Msg.URIs {
			if r.re.MatchString(u.Raw) {
				return 1
			}
		}
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
