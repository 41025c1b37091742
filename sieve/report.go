package sieve

import (
	"mime"
	"strings"
	"time"
)

// vnd.dovecot.report (Pigeonhole): report [:headers_only] <feedback-type>
// <message> <address> sends an RFC 5965 abuse feedback report about the
// message to address. The report is an action; ReportMessage builds it.

type reportCmd struct {
	headersOnly  bool
	feedbackType strv
	message      strv
	address      strv
}

// validFeedbackType checks an RFC 5965 feedback type: a MIME token.
func validFeedbackType(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?=", c) >= 0 {
			return false
		}
	}
	return true
}

func compileReport(c *compiler, n *cmdNode, a *argp) cmd {
	rc := &reportCmd{}
	for t, ok := a.tag(); ok; t, ok = a.tag() {
		if t.tag == "headers_only" {
			rc.headersOnly = true
			continue
		}
		a.unknownTag(t)
	}
	rc.feedbackType, _ = a.str("feedback type")
	rc.message, _ = a.str("message")
	rc.address, _ = a.str("address")
	if a.failed {
		return nil
	}
	if rc.feedbackType.isConst() && !validFeedbackType(rc.feedbackType.lit) {
		a.fail(n.pos, "report command: invalid feedback type '%s'", rc.feedbackType.lit)
		return nil
	}
	if rc.address.isConst() {
		if _, ok := normalizeAddress(rc.address.lit); !ok {
			a.fail(n.pos, "report command: specified address '%s' is invalid", rc.address.lit)
			return nil
		}
	}
	return rc
}

func (c *reportCmd) exec(r *run) error {
	ft := r.expand(&c.feedbackType)
	if !validFeedbackType(ft) {
		return r.runtimeErr("report action: invalid feedback type '%s'", ft)
	}
	addr, ok := normalizeAddress(r.expand(&c.address))
	if !ok {
		return r.runtimeErr("report action: specified address '%s' is invalid", r.expand(&c.address))
	}
	return r.addAction(&Action{Type: "report", Method: ft, Message: r.expand(&c.message), Address: addr, HeadersOnly: c.headersOnly}, false)
}

// ReportMessage builds the RFC 5965 feedback report of a report action.
// Settings (env.Config, Pigeonhole's names): sieve_report_from = postmaster
// (default) | sender | recipient | orig_recipient | user_email | <address>;
// sieve_user_email (the Dovecot-Reporting-User, default the envelope
// recipient); postmaster_address.
func ReportMessage(env *Env, a *Action) (OutgoingMessage, bool) {
	cfg := func(k string) string {
		if env.Config == nil {
			return ""
		}
		return strings.TrimSpace(env.Config[k])
	}
	postmaster := cfg("postmaster_address")
	if postmaster == "" {
		postmaster = "postmaster@" + domainOf(env.Envelope.To)
	}
	user := cfg("sieve_user_email")
	if user == "" {
		user = env.Envelope.To
	}
	from := postmaster
	switch v := cfg("sieve_report_from"); v {
	case "", "postmaster":
	case "sender":
		from = env.Envelope.From
	case "recipient":
		from = env.Envelope.To
	case "orig_recipient":
		from = env.Envelope.OrigTo
		if from == "" {
			from = env.Envelope.To
		}
	case "user_email":
		from = user
	default:
		if n, ok := normalizeAddress(v); ok {
			from = n
		}
	}
	if from == "" {
		from = postmaster
	}
	now := time.Now()
	if env.Now != nil {
		now = env.Now()
	}
	boundary := "dovetail-report-" + shortHash(a.Address+a.Message+now.String())
	var b strings.Builder
	hdr := func(n, v string) { writeField(&b, n, v) }
	hdr("X-Sieve", "dovetail Sieve")
	hdr("Message-ID", "<dovetail-report-"+shortHash(now.String()+a.Address)+"@"+domainOf(env.Envelope.To)+">")
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("From", "<"+from+">")
	hdr("To", "<"+a.Address+">")
	hdr("Subject", mime.QEncoding.Encode("utf-8", "Report: "+subjectOf(env.Message)))
	hdr("Auto-Submitted", "auto-generated (report)")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "multipart/report; report-type=feedback-report;\r\n\tboundary=\""+boundary+"\"")
	b.WriteString("\r\nThis is a MIME-encapsulated message\r\n\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(a.Message + "\r\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: message/feedback-report\r\n\r\n")
	b.WriteString("Version: 1\r\nFeedback-Type: " + a.Method + "\r\nUser-Agent: dovetail Sieve\r\n")
	if env.Envelope.From != "" {
		b.WriteString("Original-Mail-From: <" + env.Envelope.From + ">\r\n")
	}
	if env.Envelope.To != "" {
		b.WriteString("Original-Rcpt-To: <" + env.Envelope.To + ">\r\n")
	}
	b.WriteString("Dovecot-Reporting-User: <" + user + ">\r\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	if a.HeadersOnly {
		b.WriteString("Content-Type: text/rfc822-headers\r\n\r\n")
		b.Write(renderMessage(env.Message.headers, nil))
	} else {
		b.WriteString("Content-Type: message/rfc822\r\n\r\n")
		b.Write(renderMessage(env.Message.headers, env.Message.body))
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return OutgoingMessage{From: "", To: a.Address, Data: []byte(b.String())}, true
}

func registerReport() {
	commands["report"] = cmdDef{exts: []string{"vnd.dovecot.report"}, fn: compileReport}
	positionalCount["report"] = 3
}
