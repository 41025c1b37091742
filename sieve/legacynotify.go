package sieve

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The deprecated "notify" extension (draft-martin-sieve-notify-01) as
// Pigeonhole still supports it: notify [:method "mailto"] [:id <string>]
// [:options <recipients>] [:low|:normal|:high] [:message <string>], and
// denotify [MATCH-TYPE <id>] [:low|:normal|:high]. It conflicts with its
// successor enotify (RFC 5435); a script loads one or the other.

type legacyNotifyCmd struct {
	id         *strv
	options    []strv
	importance string // "1" high, "2" normal, "3" low
	message    *strv
}

// legacyNotifyDefaultMessage is the draft's default message.
const legacyNotifyDefaultMessage = "$from$: $subject$"

func legacyImportance(tag string) (string, bool) {
	switch tag {
	case "high":
		return "1", true
	case "normal":
		return "2", true
	case "low":
		return "3", true
	}
	return "", false
}

func compileLegacyNotify(c *compiler, n *cmdNode, a *argp) cmd {
	nc := &legacyNotifyCmd{importance: "2"}
	impSet := false
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if imp, ok := legacyImportance(t.tag); ok {
			if impSet {
				a.fail(t.pos, "multiple importance tags specified for the notify command")
				break
			}
			nc.importance, impSet = imp, true
			continue
		}
		switch t.tag {
		case "method":
			m, ok := a.str("method")
			if ok && m.isConst() && !strings.EqualFold(m.lit, "mailto") {
				a.fail(t.pos, "notify command: unsupported notification method '%s'", m.lit)
			}
		case "id":
			s, _ := a.str("id")
			nc.id = &s
		case "options":
			nc.options = a.strList("options")
			for _, o := range nc.options {
				if !o.isConst() {
					continue
				}
				if strings.TrimSpace(o.lit) == "" {
					a.fail(t.pos, "notify command: empty recipient in :options argument")
					break
				}
				if _, ok := normalizeAddress(o.lit); !ok {
					a.fail(t.pos, "notify command: invalid recipient address '%s' in :options argument", o.lit)
					break
				}
			}
		case "message":
			s, _ := a.str("message")
			nc.message = &s
		default:
			a.unknownTag(t)
		}
	}
	if a.failed {
		return nil
	}
	return nc
}

// mailtoEncode percent-encodes s for the to part of a mailto URI.
func mailtoEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isQchar(c) && c != ':' && c != ';' && c != ',' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func (c *legacyNotifyCmd) exec(r *run) error {
	var rcpts []string
	for _, o := range r.expandList(c.options) {
		norm, ok := normalizeAddress(o)
		if !ok {
			r.warn("notify action: ignored invalid recipient address '%s'", o)
			continue
		}
		rcpts = append(rcpts, mailtoEncode(norm))
	}
	if len(rcpts) == 0 {
		// the draft's default recipient is the user; without one there is
		// nothing to send
		return nil
	}
	msg := legacyNotifyDefaultMessage
	if c.message != nil {
		msg = r.expand(c.message)
	}
	a := &Action{Type: "notify", Method: "mailto:" + strings.Join(rcpts, "%2C"), Importance: c.importance,
		Message: r.legacyNotifySubstitute(msg), LegacyNotify: true}
	if c.id != nil {
		a.ID = r.expand(c.id)
	}
	return r.addAction(a, false)
}

// legacyNotifySubstitute replaces $from$, $env-from$, $subject$, $text$ and
// $text[N]$ (the first text part, at most N bytes) in a notify message.
func (r *run) legacyNotifySubstitute(msg string) string {
	if !strings.Contains(msg, "$") {
		return msg
	}
	hs := r.st.headers
	first := func(name string) string {
		if v := headerValues(hs, name); len(v) > 0 {
			return strings.TrimSpace(decodeHeader(v[0]))
		}
		return ""
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '$')
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		j := strings.IndexByte(msg[i+1:], '$')
		if j < 0 {
			b.WriteString(msg)
			return b.String()
		}
		name := msg[i+1 : i+1+j]
		val, ok := "", true
		switch {
		case name == "from":
			val = first("from")
		case name == "env-from":
			val = r.env.Envelope.From
		case name == "subject":
			val = first("subject")
		case name == "text":
			val = r.legacyNotifyText(-1)
		case strings.HasPrefix(name, "text[") && strings.HasSuffix(name, "]"):
			n := 0
			if _, err := fmt.Sscanf(name[5:len(name)-1], "%d", &n); err != nil || n < 0 {
				ok = false
			} else {
				val = r.legacyNotifyText(n)
			}
		default:
			ok = false
		}
		if !ok {
			// not a substitution: keep the '$' and go on after it
			b.WriteString(msg[:i+1])
			msg = msg[i+1:]
			continue
		}
		b.WriteString(msg[:i])
		b.WriteString(val)
		msg = msg[i+2+j:]
	}
}

// legacyNotifyText is the content of the first text/plain part (else the
// first text part), truncated to max bytes when max >= 0.
func (r *run) legacyNotifyText(max int) string {
	var text []byte
	var fallback []byte
	found := false
	for _, p := range r.env.Message.mimeRoot().all(nil) {
		if len(p.children) > 0 || !strings.HasPrefix(p.ctype, "text/") {
			continue
		}
		if p.ctype == "text/plain" {
			text, found = p.decodedText(), true
			break
		}
		if fallback == nil {
			fallback = p.decodedText()
		}
	}
	if !found {
		text = fallback
	}
	if max >= 0 && len(text) > max {
		text = text[:max]
		for len(text) > 0 && !utf8.Valid(text) {
			text = text[:len(text)-1]
		}
	}
	return string(text)
}

type denotifyCmd struct {
	m          *matcher // nil: every notification
	importance string   // "" any
}

func (c *denotifyCmd) exec(r *run) error {
	st := r.st
	kept := make([]*Action, 0, len(st.actions))
	origin := make([]int, 0, len(st.origin))
	for i, a := range st.actions {
		drop := false
		if a.Type == "notify" && a.LegacyNotify && st.origin[i] == st.scriptNo &&
			(c.importance == "" || c.importance == a.Importance) {
			drop = true
			if c.m != nil {
				ok, err := c.m.match(r, []string{a.ID})
				if err != nil {
					return err
				}
				drop = ok && a.ID != ""
			}
		}
		if !drop {
			kept = append(kept, a)
			origin = append(origin, st.origin[i])
		}
	}
	st.actions, st.origin = kept, origin
	return nil
}

func compileDenotify(c *compiler, n *cmdNode, a *argp) cmd {
	dc := &denotifyCmd{}
	var ms matchSpec
	var keys []strv
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if imp, ok := legacyImportance(t.tag); ok {
			if dc.importance != "" {
				a.fail(t.pos, "multiple importance tags specified for the denotify command")
				break
			}
			dc.importance = imp
			continue
		}
		switch t.tag {
		case "is", "contains", "matches", "regex", "comparator":
			if !c.stdTag(a, t, &ms, stdMatch) {
				a.unknownTag(t)
				continue
			}
			if t.tag != "comparator" && keys == nil {
				if s, ok := a.str("id"); ok {
					keys = []strv{s}
				}
			}
		default:
			a.unknownTag(t)
		}
	}
	if a.failed {
		return nil
	}
	if keys != nil {
		if dc.m = c.finishMatch(a, &ms, keys); dc.m == nil {
			return nil
		}
	}
	return dc
}
