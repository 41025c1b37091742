package policyd

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Action is one access(5) result: a verb ("DEFER_IF_PERMIT", "REJECT", or a
// three-digit SMTP code such as "450") and optional text.
type Action struct {
	Verb string
	Text string
}

// Verbs this daemon answers or accepts in its configuration.
const (
	VerbDunno         = "DUNNO"
	VerbOK            = "OK"
	VerbReject        = "REJECT"
	VerbDefer         = "DEFER"
	VerbDeferIfPermit = "DEFER_IF_PERMIT"
	VerbDeferIfReject = "DEFER_IF_REJECT"
	VerbHold          = "HOLD"
	VerbDiscard       = "DISCARD"
	VerbPrepend       = "PREPEND"
	VerbWarn          = "WARN"
	VerbInfo          = "INFO"
	VerbFilter        = "FILTER"
	VerbRedirect      = "REDIRECT"
	VerbBCC           = "BCC"
)

// Dunno is "no opinion": Postfix goes on with its next restriction.
var Dunno = Action{Verb: VerbDunno}

// tempFail answers internal errors: temporary, and only when nothing else
// rejects (Postfix's DEFER_IF_PERMIT), so a broken check never hides a 5xx
// that another restriction would have given.
var tempFail = Action{Verb: VerbDeferIfPermit, Text: "4.3.0 Temporary policy service failure, try again later"}

// knownVerbs maps each verb to whether it needs text.
var knownVerbs = map[string]bool{
	VerbDunno: false, VerbOK: false, VerbReject: false, VerbDefer: false,
	VerbDeferIfPermit: false, VerbDeferIfReject: false, VerbHold: false, VerbDiscard: false,
	VerbPrepend: true, VerbWarn: false, VerbInfo: false, VerbFilter: true, VerbRedirect: true, VerbBCC: true,
}

// ParseAction parses an action as written in the config: "DEFER_IF_PERMIT text",
// "REJECT", "450 4.7.1 text", "PREPEND X-Header: value".
func ParseAction(s string) (Action, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Action{}, fmt.Errorf("empty action")
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return Action{}, fmt.Errorf("action %q contains a line break or NUL", s)
	}
	verb, text, _ := strings.Cut(s, " ")
	text = strings.TrimSpace(text)
	if isCode(verb) {
		if verb[0] != '4' && verb[0] != '5' {
			return Action{}, fmt.Errorf("action %q: an SMTP code must be 4xx or 5xx", s)
		}
		if text == "" {
			return Action{}, fmt.Errorf("action %q: a numeric code needs text", s)
		}
		if err := checkStatus(verb, text); err != nil {
			return Action{}, fmt.Errorf("action %q: %w", s, err)
		}
		return Action{Verb: verb, Text: text}, nil
	}
	up := strings.ToUpper(verb)
	needText, ok := knownVerbs[up]
	if !ok {
		return Action{}, fmt.Errorf("action %q: unknown verb %q (use DUNNO, OK, REJECT, DEFER, DEFER_IF_PERMIT, HOLD, PREPEND, DISCARD, WARN or a 4xx/5xx code)", s, verb)
	}
	if needText && text == "" {
		return Action{}, fmt.Errorf("action %q: %s needs an argument", s, up)
	}
	if up == VerbPrepend && !isHeader(text) {
		// Postfix ignores (logs) a PREPEND whose text is not a header.
		return Action{}, fmt.Errorf("action %q: PREPEND needs \"Header-Name: value\"", s)
	}
	if err := checkStatus(up, text); err != nil {
		return Action{}, fmt.Errorf("action %q: %w", s, err)
	}
	return Action{Verb: up, Text: text}, nil
}

// checkStatus checks the RFC 3463 enhanced status code that may start the
// text of an action carrying a reply code. Postfix sends it as written after
// the reply code (REJECT answers access_map_reject_code, 554; the DEFER verbs
// access_map_defer_code, 450) and checks neither its class against the
// code's nor, once it looks like one, its form: "REJECT 4.7.1" would reach
// the client as "554 4.7.1", and "450 4.7 text" as "450 4.7.1 4.7 text".
func checkStatus(verb, text string) error {
	var class byte
	switch verb {
	case VerbReject:
		class = '5'
	case VerbDefer, VerbDeferIfPermit, VerbDeferIfReject:
		class = '4'
	default:
		if !isCode(verb) {
			return nil
		}
		class = verb[0]
	}
	if len(text) < 2 || text[0] < '0' || text[0] > '9' || text[1] != '.' {
		return nil // no status code: Postfix supplies one of the right class
	}
	code, _, _ := strings.Cut(text, " ")
	if !validStatus(code) {
		return fmt.Errorf("%q is not an enhanced status code (class.subject.detail, e.g. %c.7.1)", code, class)
	}
	if code[0] != class {
		return fmt.Errorf("enhanced status code %s does not match the reply class %cxx", code, class)
	}
	return nil
}

// isHeader reports whether s starts with a header name and its colon, as
// Postfix's is_header reads it: printable ASCII other than ':', then optional
// blanks before the colon.
func isHeader(s string) bool {
	name, _, ok := strings.Cut(s, ":")
	name = strings.TrimRight(name, " \t")
	return ok && name != "" && !strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f })
}

// validStatus reports an RFC 3463 status code as Postfix's dsn_valid reads
// it: class 2, 4 or 5, then 1-3 and 1-3 digits.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || strings.IndexByte("245", parts[0][0]) < 0 {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

func isCode(s string) bool {
	return len(s) == 3 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'
}

// String renders the action as sent after "action=".
func (a Action) String() string {
	if a.Verb == "" {
		return VerbDunno
	}
	if a.Text == "" {
		return a.Verb
	}
	return a.Verb + " " + sanitize(a.Text)
}

// IsDunno reports the neutral answer.
func (a Action) IsDunno() bool { return a.Verb == "" || a.Verb == VerbDunno }

// Final reports whether the action ends the evaluation. PREPEND, WARN and INFO
// annotate rather than decide, so later checks still run.
func (a Action) Final() bool {
	switch a.Verb {
	case "", VerbDunno, VerbPrepend, VerbWarn, VerbInfo:
		return false
	}
	return true
}

// Refuses reports an action that refuses the request, now or later: REJECT,
// the DEFER verbs or a 4xx/5xx code. (OK, DISCARD, HOLD, FILTER, REDIRECT and
// BCC are final too, but let the mail in.)
func (a Action) Refuses() bool {
	switch a.Verb {
	case VerbReject, VerbDefer, VerbDeferIfPermit, VerbDeferIfReject:
		return true
	}
	return isCode(a.Verb)
}

// Permanent reports a rejection (REJECT or 5xx).
func (a Action) Permanent() bool { return a.Verb == VerbReject || (isCode(a.Verb) && a.Verb[0] == '5') }

// Label is the metric label for the action: the verb, or "4xx"/"5xx" for codes,
// so the label set stays closed.
func (a Action) Label() string {
	if a.Verb == "" {
		return VerbDunno
	}
	if isCode(a.Verb) {
		return a.Verb[:1] + "xx"
	}
	return a.Verb
}

// sanitize keeps a reply on one line: Postfix reads the action up to "\n", and a
// control character from a request value (echoed in text) must not split it.
// Invalid UTF-8 is replaced too: with smtputf8_enable Postfix refuses the action.
func sanitize(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	if !strings.ContainsFunc(s, isCtl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isCtl(r) {
			return ' '
		}
		return r
	}, s)
}

func isCtl(r rune) bool { return r < 0x20 || r == 0x7f }

// mustAction parses a constant action from code (defaults).
func mustAction(s string) Action {
	a, err := ParseAction(s)
	if err != nil {
		panic(err)
	}
	return a
}
