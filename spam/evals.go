package spam

import (
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/dovetail-mail/dovetail/spam/rules"
)

// scanData is the per-scan data eval functions see through rules.Context.Data.
type scanData struct {
	in *Input
}

// evalFuncs are the eval: tests our default ruleset (and admins) can use.
var evalFuncs = map[string]rules.EvalFunc{
	"missing_header":           func(c *rules.Context, a []string) bool { return len(a) > 0 && !c.Msg.Header.Has(a[0]) },
	"mime_anomaly":             func(c *rules.Context, a []string) bool { return len(a) > 0 && c.Msg.Has(a[0]) },
	"date_invalid":             evalDateInvalid,
	"date_in_future":           evalDateFuture,
	"date_in_past":             evalDatePast,
	"from_replyto_differ":      evalReplyToDiffers,
	"html_only":                evalHTMLOnly,
	"link_text_mismatch":       evalLinkMismatch,
	"exe_attachment":           evalExeAttachment,
	"double_extension":         evalDoubleExtension,
	"subject_all_caps":         evalSubjectAllCaps,
	"from_no_address":          evalFromNoAddress,
	"uri_numeric_host":         evalURINumericHost,
	"from_domain_not_received": evalFromDomainNotReceived,
	"mid_domain_aligned":       evalMIDAligned,
	"list_headers_consistent":  evalListConsistent,
	"text_caps_ratio":          evalTextCapsRatio,
	"text_char_count":          evalTextCharCount,
	"has_html":                 evalHasHTML,
	"to_is_from":               evalToIsFrom,
	"base64_text":              evalBase64Text,
	"date_no_tz":               evalDateNoTZ,
	"from_local_random":        evalFromLocalRandom,
	"rcpt_domains":             evalRcptDomains,
	"uri_unusual_port":         evalURIPort,
	"html_image_little_text":   evalHTMLImageLittleText,
	"mid_from_recipient":       evalMIDFromRecipient,
	"subject_random_tail":      evalSubjectRandomTail,
	"no_text_parts": func(c *rules.Context, _ []string) bool {
		return strings.TrimSpace(c.Msg.Text) == "" && len(c.Msg.Parts) > 0
	},
	"envelope_from_null": func(c *rules.Context, _ []string) bool {
		d, _ := c.Data.(*scanData)
		return d != nil && d.in.MailFrom == "" && d.in.ClientIP != nil
	},
}

func messageDate(c *rules.Context) (time.Time, bool, bool) {
	v := c.Msg.Header.Get("Date")
	if v == "" {
		return time.Time{}, false, false
	}
	t, err := mail.ParseDate(v)
	return t, true, err == nil
}

func evalDateInvalid(c *rules.Context, _ []string) bool {
	_, present, ok := messageDate(c)
	return present && !ok
}

// receivedTime is the time the top Received field records (our MTA, or the
// last hop that kept the message): the reference for date checks, so an old
// message is judged against its own delivery time, not today's clock.
func receivedTime(c *rules.Context) (time.Time, bool) {
	for _, r := range c.Msg.Header.Values("Received") {
		i := strings.LastIndexByte(r, ';')
		if i < 0 {
			continue
		}
		if t, err := mail.ParseDate(strings.TrimSpace(r[i+1:])); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func hoursArg(a []string, def float64) time.Duration {
	if len(a) > 0 {
		if v, err := strconv.ParseFloat(a[0], 64); err == nil {
			def = v
		}
	}
	return time.Duration(def * float64(time.Hour))
}

func evalDateFuture(c *rules.Context, a []string) bool {
	d, _, ok := messageDate(c)
	if !ok {
		return false
	}
	ref, ok := receivedTime(c)
	if !ok {
		ref = c.Now
	}
	return d.Sub(ref) > hoursArg(a, 12)
}

func evalDatePast(c *rules.Context, a []string) bool {
	d, _, ok := messageDate(c)
	if !ok {
		return false
	}
	ref, ok := receivedTime(c)
	if !ok {
		return false // without a Received time, "old" says nothing
	}
	return ref.Sub(d) > hoursArg(a, 96)
}

func addrDomain(v string) string {
	if a, err := mail.ParseAddress(v); err == nil {
		v = a.Address
	} else if i := strings.IndexByte(v, '<'); i >= 0 {
		v, _, _ = strings.Cut(v[i+1:], ">")
	}
	_, d, _ := strings.Cut(strings.TrimSpace(v), "@")
	return strings.ToLower(d)
}

// orgDomain approximates the organisational domain by its last two labels
// (three for two-letter TLDs with a short second level: example.co.uk).
func orgDomain(d string) string {
	p := strings.Split(d, ".")
	n := 2
	if len(p) >= 3 && len(p[len(p)-1]) == 2 && len(p[len(p)-2]) <= 3 {
		n = 3
	}
	if len(p) <= n {
		return d
	}
	return strings.Join(p[len(p)-n:], ".")
}

func evalReplyToDiffers(c *rules.Context, _ []string) bool {
	rt := c.Msg.Header.Get("Reply-To")
	if rt == "" {
		return false
	}
	fd, rd := addrDomain(c.Msg.Header.Get("From")), addrDomain(rt)
	return fd != "" && rd != "" && orgDomain(fd) != orgDomain(rd)
}

func evalHTMLOnly(c *rules.Context, _ []string) bool {
	html, plain := false, false
	for _, p := range c.Msg.Parts {
		if p.IsAttachment() && p.Disposition == "attachment" {
			continue
		}
		switch p.ContentType {
		case "text/html":
			html = true
		case "text/plain":
			if strings.TrimSpace(p.Text) != "" {
				plain = true
			}
		}
	}
	return html && !plain
}

// evalLinkMismatch: an HTML link whose visible text is itself a URL or host
// name pointing elsewhere than its href — the phishing pattern.
func evalLinkMismatch(c *rules.Context, _ []string) bool {
	for _, u := range c.Msg.URIs {
		if !u.HTML || u.Host == "" || u.Shown == "" {
			continue
		}
		shown := strings.ToLower(strings.TrimSpace(u.Shown))
		if strings.ContainsAny(shown, " \t\n") {
			continue
		}
		var sh string
		switch {
		case strings.HasPrefix(shown, "http://") || strings.HasPrefix(shown, "https://"):
			_, rest, _ := strings.Cut(shown, "://")
			sh, _, _ = strings.Cut(rest, "/")
		case strings.HasPrefix(shown, "www."):
			sh, _, _ = strings.Cut(shown, "/")
		default:
			continue
		}
		sh, _, _ = strings.Cut(sh, ":")
		if sh != "" && orgDomain(sh) != orgDomain(u.Host) {
			return true
		}
	}
	return false
}

var exeExt = map[string]bool{"exe": true, "scr": true, "pif": true, "com": true, "bat": true, "cmd": true,
	"vbs": true, "vbe": true, "js": true, "jse": true, "wsf": true, "wsh": true, "hta": true, "cpl": true,
	"msi": true, "jar": true, "lnk": true, "reg": true, "ps1": true, "dll": true, "iso": true}

func extOf(name string) (string, string) {
	name = strings.ToLower(strings.TrimRight(strings.TrimSpace(name), ". "))
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return name, ""
	}
	return name[:i], name[i+1:]
}

func evalExeAttachment(c *rules.Context, _ []string) bool {
	for _, p := range c.Msg.Parts {
		if _, ext := extOf(p.Filename); exeExt[ext] {
			return true
		}
	}
	return false
}

func evalDoubleExtension(c *rules.Context, _ []string) bool {
	for _, p := range c.Msg.Parts {
		base, ext := extOf(p.Filename)
		if !exeExt[ext] {
			continue
		}
		if _, inner := extOf(base); inner != "" && len(inner) <= 4 && !exeExt[inner] {
			return true
		}
	}
	return false
}

func evalSubjectAllCaps(c *rules.Context, _ []string) bool {
	s := c.Msg.Subject()
	letters, upper := 0, 0
	for _, r := range s {
		if unicode.IsLetter(r) && r < 0x250 {
			letters++
			if unicode.IsUpper(r) {
				upper++
			}
		}
	}
	return letters >= 10 && upper == letters
}

func evalFromNoAddress(c *rules.Context, _ []string) bool {
	f := c.Msg.Header.Get("From")
	return f != "" && !strings.Contains(f, "@")
}

func evalURINumericHost(c *rules.Context, _ []string) bool {
	for _, u := range c.Msg.URIs {
		h := u.Host
		if h != "" && strings.Trim(h, "0123456789.") == "" && strings.Count(h, ".") == 3 {
			return true
		}
	}
	return false
}

// evalFromDomainNotReceived: the From domain is one of args (large mailbox
// providers that always add their own Received header) but no Received header
// names it — the sender address is forged (SpamAssassin's FORGED_*_RCVD).
func evalFromDomainNotReceived(c *rules.Context, a []string) bool {
	d := addrDomain(c.Msg.Header.Get("From"))
	if d == "" {
		return false
	}
	od := orgDomain(d)
	listed := false
	for _, want := range a {
		if od == strings.ToLower(want) {
			listed = true
			break
		}
	}
	if !listed {
		return false
	}
	rcvd := c.Msg.Header.Values("Received")
	if len(rcvd) == 0 {
		return false
	}
	// The provider's label ("hotmail" of hotmail.com) in any host name or HELO
	// of the chain counts: providers relay through sibling domains.
	label, _, _ := strings.Cut(od, ".")
	for _, r := range rcvd {
		if strings.Contains(strings.ToLower(r), label) {
			return false
		}
	}
	return true
}

// midDomain is the organisational domain of the Message-Id's right-hand side.
func midDomain(c *rules.Context) string {
	v := strings.TrimSpace(c.Msg.Header.Get("Message-Id"))
	i := strings.LastIndexByte(v, '@')
	if i < 0 {
		return ""
	}
	d := strings.ToLower(strings.Trim(v[i+1:], "<> \t"))
	if strings.Trim(d, "0123456789.[]") == "" || !strings.Contains(d, ".") {
		return "" // an address literal or a bare host name says nothing
	}
	return orgDomain(d)
}

// evalMIDAligned: the Message-Id was made in the same organisational domain as
// the From, Sender or Return-Path address — what a sender's own mail system
// (or its bulk-mail provider on its behalf) does, and what forged mail rarely
// gets right.
//
// Arguments name the address fields to compare with (default From, Sender,
// Return-Path; mailing lists rewrite the last two).
func evalMIDAligned(c *rules.Context, a []string) bool {
	md := midDomain(c)
	if md == "" {
		return false
	}
	fields := []string{"From", "Sender", "Return-Path"}
	if len(a) > 0 {
		fields = a
	}
	for _, h := range fields {
		if d := addrDomain(c.Msg.Header.Get(h)); d != "" && orgDomain(d) == md {
			return true
		}
	}
	return false
}

// evalListConsistent: a List-Id whose domain also appears in List-Unsubscribe or
// List-Post — mailing-list software (RFC 2369/2919) rather than a pasted header.
func evalListConsistent(c *rules.Context, _ []string) bool {
	id := c.Msg.Header.Get("List-Id")
	i, j := strings.LastIndexByte(id, '<'), strings.LastIndexByte(id, '>')
	if i < 0 || j < i {
		return false
	}
	lid := strings.ToLower(id[i+1 : j])
	// list-name.example.org: the domain is what follows the first label.
	_, dom, ok := strings.Cut(lid, ".")
	if !ok || !strings.Contains(dom, ".") {
		dom = lid
	}
	od := orgDomain(dom)
	other := strings.ToLower(c.Msg.Header.Get("List-Unsubscribe") + " " + c.Msg.Header.Get("List-Post"))
	return od != "" && strings.Contains(other, od)
}

func argInt(a []string, i, def int) int {
	if len(a) > i {
		if v, err := strconv.Atoi(strings.TrimSpace(a[i])); err == nil {
			return v
		}
	}
	return def
}

// evalTextCapsRatio(minWords, percent): at least minWords words of three or
// more Latin letters in the visible text, and more than percent of them in
// capitals (shouting).
func evalTextCapsRatio(c *rules.Context, a []string) bool {
	minWords, pct := argInt(a, 0, 40), argInt(a, 1, 30)
	words, caps, n, upper := 0, 0, 0, 0
	flush := func() {
		if n >= 3 {
			words++
			if upper == n {
				caps++
			}
		}
		n, upper = 0, 0
	}
	for _, r := range c.Msg.Text {
		if r < 0x80 && unicode.IsLetter(r) {
			n++
			if unicode.IsUpper(r) {
				upper++
			}
			continue
		}
		flush()
	}
	flush()
	return words >= minWords && caps*100 > pct*words
}

// evalTextCharCount(char, n): the visible text contains char at least n times
// (e.g. '!' 10: exclamation-heavy copy).
func evalTextCharCount(c *rules.Context, a []string) bool {
	if len(a) == 0 || a[0] == "" {
		return false
	}
	return strings.Count(c.Msg.Text, a[0]) >= argInt(a, 1, 10)
}

func evalHasHTML(c *rules.Context, _ []string) bool {
	for _, p := range c.Msg.Parts {
		if p.HTML {
			return true
		}
	}
	return false
}

func evalToIsFrom(c *rules.Context, _ []string) bool {
	to, from := c.Msg.Header.Get("To"), c.Msg.Header.Get("From")
	if to == "" || from == "" || strings.Contains(to, ",") {
		return false
	}
	return strings.EqualFold(strings.TrimSpace(addrOnly(to)), strings.TrimSpace(addrOnly(from)))
}

// evalBase64Text: a text part sent in base64 although it is not an attachment
// (mail clients use quoted-printable for text; bulk tools hide text from
// filters that do not decode).
func evalBase64Text(c *rules.Context, _ []string) bool {
	for _, p := range c.Msg.Parts {
		if p.Encoding == "base64" && strings.HasPrefix(p.ContentType, "text/") && p.Filename == "" && p.Disposition != "attachment" {
			return true
		}
	}
	return false
}

// evalDateNoTZ: a Date: without a zone offset or name (RFC 5322 requires one).
func evalDateNoTZ(c *rules.Context, _ []string) bool {
	v := c.Msg.Header.Get("Date")
	if v == "" {
		return false
	}
	if i := strings.IndexByte(v, '('); i >= 0 {
		v = v[:i]
	}
	f := strings.Fields(v)
	if len(f) == 0 {
		return false
	}
	last := strings.ToUpper(f[len(f)-1])
	if len(last) == 5 && (last[0] == '+' || last[0] == '-') && strings.Trim(last[1:], "0123456789") == "" {
		return false
	}
	switch last {
	case "UT", "UTC", "GMT", "Z", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT":
		return false
	}
	return true
}

// evalFromLocalRandom: the From local part looks generated — seven or more
// letters and digits only, with at least two digits, and a digit run between
// letters (xk29dhq7, bq4r7tz): throwaway accounts made by bulk tools.
// Human-chosen names put digits at the end (john1975) and are not matched.
func evalFromLocalRandom(c *rules.Context, _ []string) bool {
	a := addrOnly(c.Msg.Header.Get("From"))
	if m, err := mail.ParseAddress(c.Msg.Header.Get("From")); err == nil {
		a = m.Address
	}
	local, _, ok := strings.Cut(strings.TrimSpace(a), "@")
	if !ok || len(local) < 7 {
		return false
	}
	digits, inner := 0, false
	for i := 0; i < len(local); i++ {
		ch := local[i]
		switch {
		case ch >= '0' && ch <= '9':
			digits++
			if i > 0 && isASCIILetter(local[i-1]) {
				// a digit run that starts after a letter and is followed by one
				j := i
				for j < len(local) && local[j] >= '0' && local[j] <= '9' {
					j++
				}
				if j < len(local) && isASCIILetter(local[j]) {
					inner = true
				}
			}
		case isASCIILetter(ch):
		default:
			return false
		}
	}
	return digits >= 2 && inner
}

func isASCIILetter(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }

// evalRcptDomains(n): To and Cc together name addresses in at least n
// different organisational domains — a recipient list pasted into the header,
// which neither people nor list software nor newsletter senders do.
func evalRcptDomains(c *rules.Context, a []string) bool {
	want := argInt(a, 0, 8)
	seen := map[string]bool{}
	for _, f := range []string{"To", "Cc"} {
		for _, v := range c.Msg.Header.Values(f) {
			for _, part := range strings.Split(v, ",") {
				if d := addrDomain(part); d != "" {
					seen[orgDomain(strings.TrimRight(d, ">. "))] = true
				}
			}
		}
	}
	return len(seen) >= want
}

// evalURIPort: a web link with an explicit port other than 80 and 443
// (throwaway web servers on home connections).
func evalURIPort(c *rules.Context, _ []string) bool {
	for _, u := range c.Msg.URIs {
		raw := strings.ToLower(u.Raw)
		rest, ok := strings.CutPrefix(raw, "http://")
		if !ok {
			if rest, ok = strings.CutPrefix(raw, "https://"); !ok {
				continue
			}
		}
		hostport, _, _ := strings.Cut(rest, "/")
		hostport, _, _ = strings.Cut(hostport, "?")
		if i := strings.LastIndexByte(hostport, '@'); i >= 0 {
			hostport = hostport[i+1:]
		}
		i := strings.LastIndexByte(hostport, ':')
		if i < 0 || strings.Contains(hostport, "]") && strings.LastIndexByte(hostport, ']') > i {
			continue
		}
		if p := hostport[i+1:]; p != "" && p != "80" && p != "443" && strings.Trim(p, "0123456789") == "" {
			return true
		}
	}
	return false
}

// evalHTMLImageLittleText: an HTML message that shows images and under 200
// characters of text — the words are in the picture, out of a filter's reach.
func evalHTMLImageLittleText(c *rules.Context, _ []string) bool {
	if c.Msg.HTMLTags["img"] == 0 {
		return false
	}
	n := 0
	for _, r := range c.Msg.Text {
		if !unicode.IsSpace(r) {
			n++
			if n >= 200 {
				return false
			}
		}
	}
	return true
}

// evalMIDFromRecipient: the Message-Id was made in the recipient's domain
// while the sender is elsewhere — the message left its sender without one and
// a receiving MTA added it (SpamAssassin's MSGID_FROM_MTA_*). Mail clients,
// list software and newsletter systems always write their own.
func evalMIDFromRecipient(c *rules.Context, _ []string) bool {
	md := midDomain(c)
	if md == "" {
		return false
	}
	to := c.Msg.Header.Get("To")
	if i := strings.IndexByte(to, ','); i >= 0 {
		to = to[:i]
	}
	td, fd := addrDomain(to), addrDomain(c.Msg.Header.Get("From"))
	if td == "" || fd == "" {
		return false
	}
	td = orgDomain(strings.TrimRight(td, ">. "))
	return md == td && orgDomain(fd) != td
}

// evalSubjectRandomTail: the Subject ends in a per-recipient tracking tag —
// a bracketed run alternating letters and digits ("[x7k2q]") or a
// word of five or more letters without a vowel ("wzwjt", "GZRHTKJ"), which
// no language writes.
func evalSubjectRandomTail(c *rules.Context, _ []string) bool {
	f := strings.Fields(c.Msg.Subject())
	if len(f) < 2 {
		return false
	}
	last := f[len(f)-1]
	if n := len(last); n >= 4 && (last[0] == '[' && last[n-1] == ']' || last[0] == '(' && last[n-1] == ')') {
		// Letters and digits alternating at least three times (x7k2q):
		// ticket numbers and versions ([TIX106448], [RH8]) change once.
		in := last[1 : n-1]
		changes := 0
		for i := 0; i < len(in); i++ {
			digit := in[i] >= '0' && in[i] <= '9'
			if !digit && !isASCIILetter(in[i]) {
				return false
			}
			if i > 0 && digit != (in[i-1] >= '0' && in[i-1] <= '9') {
				changes++
			}
		}
		return changes >= 3
	}
	if len(last) < 5 {
		return false
	}
	for i := 0; i < len(last); i++ {
		if !isASCIILetter(last[i]) || strings.IndexByte("aeiouyAEIOUY", last[i]) >= 0 {
			return false
		}
	}
	return strings.Count(last, last[:1]) < len(last) // not "zzzzz"
}

// addrOnly is the text inside the first <…>, or all of v: good enough for
// rule heuristics, not for decisions on identity (see fromAddresses).
func addrOnly(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		a, _, _ := strings.Cut(v[i+1:], ">")
		return a
	}
	return v
}
