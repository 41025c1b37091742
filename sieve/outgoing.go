package sieve

import (
	"mime"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/header"
)

// RejectMessage builds the MDN-style rejection for a reject action (RFC
// 5429), sent from the null sender to the envelope sender. ok is false when
// the envelope sender is null (nothing must be sent).
func RejectMessage(env *Env, a *Action) (to string, msg []byte, ok bool) {
	sender := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(env.Envelope.From), "<"), ">")
	if sender == "" {
		return "", nil, false
	}
	now := time.Now()
	if env.Now != nil {
		now = env.Now()
	}
	boundary := "dovetail-reject-" + shortHash(sender+a.Reason)
	var b strings.Builder
	hdr := func(n, v string) { writeField(&b, n, v) }
	hdr("X-Sieve", "dovetail Sieve")
	hdr("Message-ID", "<dovetail-reject-"+shortHash(now.String()+sender)+"@"+domainOf(env.Envelope.To)+">")
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("From", "Mail Delivery Subsystem <Postmaster@"+domainOf(env.Envelope.To)+">")
	hdr("To", "<"+sender+">")
	// encoded again: the decoded subject may hold a line break (or 8-bit text)
	hdr("Subject", mime.QEncoding.Encode("utf-8", "Rejected: "+subjectOf(env.Message)))
	hdr("Auto-Submitted", "auto-replied (rejected)")
	hdr("Precedence", "bulk")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "multipart/report; report-type=disposition-notification;\r\n\tboundary=\""+boundary+"\"")
	b.WriteString("\r\nThis is a MIME-encapsulated message\r\n\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString("Your message to <" + env.Envelope.To + "> was automatically rejected:\r\n" + a.Reason + "\r\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: message/disposition-notification\r\n\r\n")
	b.WriteString("Reporting-UA: dovetail; Sieve\r\nFinal-Recipient: rfc822; " + env.Envelope.To + "\r\nDisposition: automatic-action/MDN-sent-automatically; deleted\r\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: message/rfc822\r\n\r\n")
	b.Write(renderMessage(env.Message.headers, nil))
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return sender, []byte(b.String()), true
}

// writeField writes a header field of an outgoing message, folded (as
// Pigeonhole's rfc2822_header_write does): a subject taken from the original
// message or a long References field ran past the 998-character line limit.
func writeField(b *strings.Builder, name, v string) {
	b.WriteString(name + ":" + header.Fold(name, " "+v) + "\r\n")
}

func subjectOf(m *Message) string {
	if v := headerValues(m.headers, "subject"); len(v) > 0 {
		return decodeHeader(v[0])
	}
	return ""
}

func composeOutgoing(s *suiteRunner, a Action) []sentMsg {
	env := s.env()
	env.Message = s.msg
	switch a.Type {
	case "vacation":
		o, ok, _ := VacationReply(env, &a)
		if !ok {
			return nil
		}
		return []sentMsg{{from: o.From, to: o.To, msg: NewMessage(o.Data)}}
	case "reject":
		to, msg, ok := RejectMessage(env, &a)
		if !ok {
			return nil
		}
		return []sentMsg{{from: "", to: to, msg: NewMessage(msg)}}
	case "report":
		o, ok := ReportMessage(env, &a)
		if !ok {
			return nil
		}
		return []sentMsg{{from: o.From, to: o.To, msg: NewMessage(o.Data)}}
	case "notify":
		if s.notified == nil {
			s.notified = map[string]bool{}
		}
		var out []sentMsg
		for _, o := range NotifyMessages(env, &a, s.notified) {
			out = append(out, sentMsg{from: o.From, to: o.To, msg: NewMessage(o.Data)})
		}
		return out
	}
	return nil
}

// RedirectMessage prepares a redirect action for sending, following
// Pigeonhole: the envelope sender is chosen by sieve_redirect_envelope_from
// (sender, recipient, orig_recipient, user_email or an explicit <address>),
// an X-Sieve-Redirected-From header is added, and ok is false when the
// message already carries that header for this user (a mail loop).
func RedirectMessage(env *Env, a *Action) (out OutgoingMessage, ok bool) {
	cfg := func(k string) string {
		if env.Config == nil {
			return ""
		}
		return strings.TrimSpace(env.Config[k])
	}
	sender := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(env.Envelope.From), "<"), ">")
	user := cfg("sieve_user_email")
	if user == "" {
		user = env.Envelope.To
	}
	for _, v := range headerValues(env.Message.headers, "x-sieve-redirected-from") {
		for _, p := range parseAddressList(v) {
			if p.ok && (strings.EqualFold(p.local+"@"+p.domain, user) || strings.EqualFold(p.local+"@"+p.domain, env.Envelope.To)) {
				return out, false
			}
		}
	}
	from := sender
	if sender != "" {
		switch mode := cfg("sieve_redirect_envelope_from"); {
		case mode == "" || mode == "sender":
		case mode == "recipient":
			from = env.Envelope.To
		case mode == "orig_recipient":
			from = env.Envelope.OrigTo
			if from == "" {
				from = env.Envelope.To
			}
		case mode == "user_email":
			from = user
		case strings.HasPrefix(mode, "<") && strings.HasSuffix(mode, ">"):
			from = strings.TrimSpace(mode[1 : len(mode)-1])
		}
	}
	hdr := "X-Sieve-Redirected-From: " + user + "\r\n"
	hs := env.Message.headers
	if a.Headers != nil {
		hs = a.Headers
	}
	data := append([]byte(hdr), renderMessage(hs, env.Message.body)...)
	return OutgoingMessage{From: from, To: a.Address, Data: data}, true
}
