package sieve

import (
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
)

// date / currentdate (RFC 5260)

var dateParts = map[string]bool{"year": true, "month": true, "day": true, "date": true, "julian": true,
	"hour": true, "minute": true, "second": true, "time": true, "iso8601": true, "std11": true, "zone": true, "weekday": true}

type dateTest struct {
	current  bool
	header   strv
	part     strv
	zone     *strv
	original bool
	m        *matcher
	index    int
	last     bool
}

func parseZone(z string) (*time.Location, bool) {
	if len(z) != 5 || (z[0] != '+' && z[0] != '-') {
		return nil, false
	}
	for i := 1; i < 5; i++ {
		if z[i] < '0' || z[i] > '9' {
			return nil, false
		}
	}
	h := int(z[1]-'0')*10 + int(z[2]-'0')
	m := int(z[3]-'0')*10 + int(z[4]-'0')
	if m > 59 {
		return nil, false
	}
	off := (h*60 + m) * 60
	if z[0] == '-' {
		off = -off
	}
	return time.FixedZone(z, off), true
}

func datePart(t time.Time, part string) (string, bool) {
	switch strings.ToLower(part) {
	case "year":
		return fmt.Sprintf("%04d", t.Year()), true
	case "month":
		return fmt.Sprintf("%02d", int(t.Month())), true
	case "day":
		return fmt.Sprintf("%02d", t.Day()), true
	case "date":
		return t.Format("2006-01-02"), true
	case "julian":
		// Modified Julian Day
		y, m, d := t.Date()
		u := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		mjd := u.Unix()/86400 + 40587
		return fmt.Sprintf("%d", mjd), true
	case "hour":
		return fmt.Sprintf("%02d", t.Hour()), true
	case "minute":
		return fmt.Sprintf("%02d", t.Minute()), true
	case "second":
		return fmt.Sprintf("%02d", t.Second()), true
	case "time":
		return t.Format("15:04:05"), true
	case "iso8601":
		return t.Format("2006-01-02T15:04:05-07:00"), true
	case "std11":
		return t.Format("Mon, 02 Jan 2006 15:04:05 -0700"), true
	case "zone":
		return t.Format("-0700"), true
	case "weekday":
		return fmt.Sprintf("%d", int(t.Weekday())), true
	}
	return "", false
}

// obsZones are the obsolete zone names of RFC 5322 section 4.3.
var obsZones = map[string]string{"UT": "+0000", "GMT": "+0000", "EST": "-0500", "EDT": "-0400",
	"CST": "-0600", "CDT": "-0500", "MST": "-0700", "MDT": "-0600", "PST": "-0800", "PDT": "-0700"}

// alphaZone finds an alphabetic zone after the time of day.
var alphaZone = regexp.MustCompile(`:\d\d[ \t]+([A-Za-z]{1,5})\b`)

// numericZone writes an alphabetic zone as its offset before the date is
// parsed: time.Parse would give an abbreviation the offset the server's
// local zone uses for it (CST: -0600 in Chicago, +0800 in Shanghai) and zero
// elsewhere. The RFC 5322 names get theirs; any other (military letters,
// local abbreviations) says nothing about the offset and reads as "-0000",
// as in Dovecot's message-date parser.
func numericZone(v string) string {
	m := alphaZone.FindStringSubmatchIndex(v)
	if m == nil {
		return v
	}
	off, ok := obsZones[strings.ToUpper(v[m[2]:m[3]])]
	if !ok {
		off = "-0000"
	}
	return v[:m[2]] + off + v[m[3]:]
}

func parseMailDate(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if i := strings.LastIndexByte(v, ';'); i >= 0 { // e.g. Received
		v = strings.TrimSpace(v[i+1:])
	}
	v = numericZone(v)
	t, err := mail.ParseDate(v)
	if err != nil {
		return time.Time{}, false
	}
	if _, off := t.Zone(); off > 14*3600 || off < -14*3600 {
		return time.Time{}, false
	}
	return t, true
}

func (t *dateTest) eval(r *run) (bool, error) {
	part := r.expand(&t.part)
	var times []time.Time
	if t.current {
		times = []time.Time{r.now()}
	} else {
		hn := r.expand(&t.header)
		var raw []string
		for _, h := range r.headers() {
			if strings.EqualFold(h.Name, hn) {
				raw = append(raw, unfold(h.Value))
			}
		}
		raw = selectIndex(raw, t.index, t.last)
		for _, v := range raw {
			if tm, ok := parseMailDate(v); ok {
				times = append(times, tm)
			}
		}
	}
	var vals []string
	for _, tm := range times {
		switch {
		case t.zone != nil:
			z := r.expand(t.zone)
			loc, ok := parseZone(z)
			if !ok {
				continue
			}
			tm = tm.In(loc)
		case t.original:
		default:
			if t.current {
				tm = tm.In(time.Local)
			} else {
				tm = tm.In(time.Local)
			}
		}
		if v, ok := datePart(tm, part); ok {
			vals = append(vals, v)
		}
	}
	return t.m.match(r, vals)
}

func compileDate(c *compiler, n *testNode, a *argp) test {
	dt := &dateTest{current: n.name == "currentdate"}
	var ms matchSpec
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		switch {
		case t.tag == "zone":
			if dt.zone != nil || dt.original {
				a.fail(t.pos, "multiple zone tags specified for the %s", a.what)
				continue
			}
			z, ok := a.str("zone")
			if !ok {
				continue
			}
			// an invalid zone is ignored at runtime (Pigeonhole warns)
			dt.zone = &z
		case t.tag == "originalzone" && !dt.current:
			if dt.zone != nil || dt.original {
				a.fail(t.pos, "multiple zone tags specified for the %s", a.what)
				continue
			}
			dt.original = true
		default:
			fl := stdMatch
			if !dt.current {
				fl |= stdIndex
			}
			if !c.stdTag(a, t, &ms, fl) {
				a.unknownTag(t)
			}
		}
	}
	if !dt.current {
		dt.header, _ = a.str("header name")
	}
	dt.part, _ = a.str("date part")
	keys := a.strList("key list")
	if a.failed {
		return nil
	}
	if dt.part.isConst() && !dateParts[strings.ToLower(dt.part.lit)] {
		a.fail(n.pos, "the %s: unknown date part '%s'", a.what, dt.part.lit)
		return nil
	}
	dt.m = c.finishMatch(a, &ms, keys)
	if dt.m == nil {
		return nil
	}
	dt.index, dt.last = ms.index, ms.last
	return dt
}
