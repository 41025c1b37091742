package message

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/net/html"
)

// maxHTMLTokens bounds the tokenizer's work on hostile HTML.
const maxHTMLTokens = 200000

// htmlToText returns the visible text of an HTML document, records link URIs
// with their shown text and counts start tags by name (structure tokens).
func htmlToText(m *Message, src string, maxURIs int) string {
	z := html.NewTokenizer(strings.NewReader(src))
	z.SetMaxBuf(4 << 20)
	var out strings.Builder
	var hide hider
	skip := 0 // inside <script>/<style>
	inStyle := 0
	link := -1 // index of the open <a> in m.URIs
	pos := 0   // offset in src of the token read
	var shown strings.Builder
	if m.HTMLTags == nil {
		m.HTMLTags = map[string]int{}
	}
	for n := 0; n < maxHTMLTokens; n++ {
		tt := z.Next()
		at := pos
		pos += len(z.Raw())
		switch tt {
		case html.ErrorToken:
			return finishHTMLText(hide.visible(src[:at], out.String()))
		case html.TextToken:
			if skip > 0 {
				if inStyle > 0 {
					hide.styleSheet(string(z.Text()))
				}
				continue
			}
			t := string(z.Text())
			hide.text(at, out.Len(), t)
			out.WriteString(t)
			if link >= 0 {
				shown.WriteString(t)
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			m.HTMLTags[tag]++
			attrs := map[string]string{}
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				recordAttr(m, tag, string(k), string(v))
				if _, dup := attrs["style"]; dup && string(k) == "style" {
					// A browser takes the first; a later one must not hide.
					continue
				}
				attrs[string(k)] = string(v)
			}
			hide.start(tag, attrs, tt == html.SelfClosingTagToken, out.Len())
			switch tag {
			case "script", "style", "title":
				if tag == "style" {
					inStyle++
				}
				// Self-closing too: "<style/>" opens the element in HTML
				// (the slash is ignored on non-void elements), and the
				// tokenizer reads what follows as its raw text, as a
				// browser hides it, up to the end tag.
				skip++
			case "br", "p", "div", "tr", "li", "table", "h1", "h2", "h3", "h4", "td":
				out.WriteByte('\n')
			case "a":
				if href := strings.TrimSpace(attrs["href"]); href != "" && len(m.URIs) < maxURIs {
					if link >= 0 {
						m.URIs[link].Shown = strings.TrimSpace(shown.String())
					}
					m.URIs = append(m.URIs, URI{Raw: href, Host: hostOf(href), HTML: true})
					link = len(m.URIs) - 1
					shown.Reset()
				}
			case "img", "form", "iframe", "area", "frame", "embed":
				for _, k := range []string{"src", "action", "href"} {
					if u := strings.TrimSpace(attrs[k]); u != "" && len(m.URIs) < maxURIs {
						m.URIs = append(m.URIs, URI{Raw: u, Host: hostOf(u), HTML: true})
					}
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			hide.end(string(name), out.Len())
			switch string(name) {
			case "script", "style", "title":
				if skip > 0 {
					skip--
				}
				if string(name) == "style" && inStyle > 0 {
					inStyle--
				}
			case "a":
				if link >= 0 {
					m.URIs[link].Shown = strings.TrimSpace(shown.String())
					link = -1
				}
			case "p", "div", "tr", "table":
				out.WriteByte('\n')
			}
		}
	}
	return finishHTMLText(hide.visible(src[:pos], out.String()))
}

// styleAttrs are the presentational attributes whose values are kept as
// structure evidence (spam HTML has a look of its own).
var styleAttrs = map[string]bool{"color": true, "bgcolor": true, "size": true, "face": true, "align": true,
	"border": true, "width": true, "height": true, "cellpadding": true, "cellspacing": true, "text": true}

// recordAttr counts "tag.attr" and, for presentational attributes, "tag.attr=value".
func recordAttr(m *Message, tag, k, v string) {
	if len(m.HTMLAttrs) > 500 {
		return
	}
	if m.HTMLAttrs == nil {
		m.HTMLAttrs = map[string]int{}
	}
	m.HTMLAttrs[tag+"."+k]++
	if styleAttrs[k] && len(v) <= 24 {
		m.HTMLAttrs[tag+"."+k+"="+strings.ToLower(strings.TrimSpace(v))]++
	}
}

var multiBlank = regexp.MustCompile(`[ \t\x{a0}]+`)

func finishHTMLText(text string) string {
	s := multiBlank.ReplaceAllString(text, " ")
	return strings.TrimSpace(s)
}

// hostOf returns the lower-case host of a URI or a bare "www." name: the
// host a browser would connect to. Browsers parse links by the WHATWG URL
// standard, which accepts what RFC 3986 (and net/url) refuse, and spam uses
// the difference to show filters a decoy: tabs and newlines in the URL are
// dropped, in http(s)/ftp URLs '\' is '/' and any run of slashes may follow
// the scheme ("http:\\evil.example", "http://evil.example\@decoy.example/"),
// and the host may be percent-encoded.
func hostOf(raw string) string {
	s := strings.TrimFunc(raw, func(r rune) bool { return r <= ' ' })
	if strings.ContainsAny(s, "\t\r\n") {
		s = strings.NewReplacer("\t", "", "\r", "", "\n", "").Replace(s)
	}
	low := strings.ToLower(s)
	switch {
	case strings.HasPrefix(low, "mailto:"):
		if _, d, ok := strings.Cut(s, "@"); ok {
			d, _, _ = strings.Cut(d, "?")
			return strings.ToLower(strings.Trim(d, "> "))
		}
		return ""
	case strings.HasPrefix(low, "www."):
		s = "http://" + s
	}
	if scheme, rest, ok := strings.Cut(s, ":"); ok && specialScheme(strings.ToLower(scheme)) {
		return specialHost(rest)
	}
	if !strings.Contains(low, "://") {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		// Salvage the authority from an unparsable URI.
		_, rest, _ := strings.Cut(s, "://")
		rest, _, _ = strings.Cut(rest, "/")
		if i := strings.LastIndexByte(rest, '@'); i >= 0 {
			rest = rest[i+1:]
		}
		rest, _, _ = strings.Cut(rest, ":")
		return canonicalHost(strings.ToLower(rest))
	}
	return canonicalHost(strings.ToLower(strings.TrimSuffix(u.Hostname(), ".")))
}

// specialScheme reports the schemes WHATWG parses with the lenient
// authority rules (its "special" schemes that have a host).
func specialScheme(scheme string) bool {
	switch scheme {
	case "http", "https", "ftp", "ws", "wss":
		return true
	}
	return false
}

// specialHost returns the host of a special-scheme URL, rest being what
// follows "scheme:": slashes and backslashes are skipped, the authority ends
// at the next '/', '\', '?' or '#', the host follows its last '@'.
func specialHost(rest string) string {
	rest = strings.TrimLeft(rest, "/\\")
	if i := strings.IndexAny(rest, "/\\?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	host := rest
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			host = host[1:i]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if strings.Contains(host, "%") {
		if d, err := url.PathUnescape(host); err == nil {
			host = d
		}
	}
	return canonicalHost(strings.ToLower(strings.TrimSuffix(host, ".")))
}

// canonicalHost returns an IPv4 address written the ways browsers accept
// (http://1249763353/, http://0x4a.0x7d.0xe0.0x19/, http://074.125.224.25/)
// as the dotted quad they connect to, as SpamAssassin's URI canonicalisation
// does; other hosts are returned unchanged. Spam writes its numeric links
// so to slip past numeric-host rules and IP lists.
func canonicalHost(h string) string {
	if ip, ok := CanonicalIPv4(h); ok {
		return ip
	}
	return h
}

// CanonicalIPv4 parses host as the WHATWG URL standard's IPv4 parser does:
// one to four dot-separated numbers, each decimal, 0x-hexadecimal or
// 0-octal, the last filling the remaining bytes. It returns the dotted quad
// and true only when host is such an address.
func CanonicalIPv4(host string) (string, bool) {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 || host == "" {
		return "", false
	}
	var nums []uint64
	for _, p := range parts {
		base := uint64(10)
		switch {
		case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
			p, base = p[2:], 16
		case len(p) >= 2 && p[0] == '0':
			p, base = p[1:], 8
		}
		if p == "" && base == 16 {
			p = "0"
		}
		n, err := strconv.ParseUint(p, int(base), 32)
		if err != nil || p == "" {
			return "", false
		}
		nums = append(nums, n)
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return "", false
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return "", false
	}
	v |= last
	return fmt.Sprintf("%d.%d.%d.%d", v>>24, v>>16&255, v>>8&255, v&255), true
}

// uriStarts are the case-insensitive openings of URIs written in text.
var uriStarts = []string{"http://", "https://", "ftp://", "www.", "mailto:"}

// uriEnd reports whether c ends a URI written in text.
func uriEnd(c byte) bool {
	return c <= ' ' || strings.IndexByte("<>\"'`{}|\\^[]", c) >= 0
}

// findTextURIs returns the URIs written in s, scanning for their openings
// (much faster than a case-insensitive regex over every text part). One pass:
// searching the rest of the text for every opening at each step made
// "xwww.xwww.…" quadratic. Openings are matched ASCII-case-insensitively in
// s itself, since strings.ToLower may change the length of non-ASCII text.
func findTextURIs(s string, limit int) []string {
	var out []string
	for i := 0; i < len(s) && len(out) < limit; {
		which := uriStartAt(s, i)
		if which == "" {
			i++
			continue
		}
		// "www." must start a word; schemes may follow punctuation.
		if which == "www." && i > 0 && isWordByte(lowerASCII(s[i-1])) {
			i += len(which)
			continue
		}
		end := i + len(which)
		for end < len(s) && !uriEnd(s[end]) {
			end++
		}
		if end > i+len(which) {
			out = append(out, s[i:end])
		}
		i = end
	}
	return out
}

// uriStartAt returns the URI opening at s[i:], or "".
func uriStartAt(s string, i int) string {
	switch lowerASCII(s[i]) {
	case 'h', 'f', 'w', 'm':
		for _, st := range uriStarts {
			if hasPrefixASCIIFold(s[i:], st) {
				return st
			}
		}
	}
	return ""
}

// hasPrefixASCIIFold: prefix is lower-case ASCII.
func hasPrefixASCIIFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for j := 0; j < len(prefix); j++ {
		if lowerASCII(s[j]) != prefix[j] {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '/'
}

// collectTextURIs adds the URIs written in text parts (plain text and shown HTML
// text), skipping duplicates of HTML links.
func collectTextURIs(m *Message, maxURIs int) {
	seen := map[string]bool{}
	for _, u := range m.URIs {
		seen[u.Raw] = true
	}
	for _, p := range m.Parts {
		// No case-sensitive pre-test here: findTextURIs is one pass already,
		// and a gate that knew only "www." and "WWW." let "wWw." links by.
		// HTML parts count with their visible text, as in SpamAssassin: an
		// address written there unlinked ("copy www.x.example into your
		// browser") is still where the spam sends its reader.
		if p.Text == "" {
			continue
		}
		for _, raw := range findTextURIs(p.Text, maxURIs) {
			raw = strings.TrimRight(raw, ".,;:!?)")
			if seen[raw] || len(m.URIs) >= maxURIs {
				continue
			}
			seen[raw] = true
			m.URIs = append(m.URIs, URI{Raw: raw, Host: hostOf(raw)})
		}
	}
}
