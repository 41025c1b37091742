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
	"missing_header":      func(c *rules.Context, a []string) bool { return len(a) > 0 && !c.Msg.Header.Has(a[0]) },
	"mime_anomaly":        func(c *rules.Context, a []string) bool { return len(a) > 0 && c.Msg.Has(a[0]) },
	"date_invalid":        evalDateInvalid,
	"date_in_future":      evalDateFuture,
	"date_in_past":        evalDatePast,
	"from_replyto_differ": evalReplyToDiffers,
	"html_only":           evalHTMLOnly,
	"link_text_mismatch":  evalLinkMismatch,
	"exe_attachment":      evalExeAttachment,
	"double_extension":    evalDoubleExtension,
	"subject_all_caps":    evalSubjectAllCaps,
	"from_no_address":     evalFromNoAddress,
	"uri_numeric_host":    evalURINumericHost,
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
