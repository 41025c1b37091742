package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/dovetail-mail/dovetail/internal/header"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/authcheck"
)

// errScanTimeout is reported when the scorer did not return within scan_timeout.
var errScanTimeout = errors.New("scan timeout")

// endOfMessage scans the message, sends header edits through m and returns the
// reply. It never returns an error to go-milter: that would drop the
// connection and Postfix would apply milter_default_action to the message.
func (s *Server) endOfMessage(ss *session, m *gomilter.Modifier) gomilter.Response {
	rep := Report{
		QueueID:  ss.macros["i"],
		Client:   ss.client(),
		ClientIP: ss.ip(),
		Helo:     ss.helo,
		From:     ss.from,
		Rcpts:    ss.rcpts,
		AuthUser: ss.macros["{auth_authen}"],
		Size:     ss.size,
		Macros:   make(map[string]string, len(ss.macros)),
	}
	for k, v := range ss.macros {
		rep.Macros[k] = v
	}
	start := time.Now()
	resp := s.decide(ss, m, &rep)
	rep.Elapsed = time.Since(start)
	s.metrics.messages.WithLabelValues(rep.Action).Inc()
	s.logMessage(rep)
	if s.opts.OnMessage != nil {
		s.opts.OnMessage(rep)
	}
	return resp
}

func (s *Server) decide(ss *session, m *gomilter.Modifier, rep *Report) gomilter.Response {
	cfg := s.config()
	scorer := s.currentScorer()
	outbound := false
	if rep.AuthUser != "" {
		switch cfg.Authenticated {
		case AuthSkip:
			rep.Action = "skipped"
			s.stripForged(ss, m)
			return gomilter.RespAccept
		case AuthOutbound:
			outbound = true
			if s.opts.Outbound != nil {
				scorer = s.opts.Outbound
			}
		}
	}
	// skipped marks an unscanned message; outbound mail from our own users
	// carries no spam headers to the world, this one included.
	skipped := func(why string) {
		if outbound {
			s.stripForged(ss, m)
		} else {
			s.editHeaders(ss, m, []spam.Header{{Name: "X-Spam-Skipped", Value: why}})
		}
	}
	if ss.oversize {
		rep.Action = "oversize"
		skipped(fmt.Sprintf("size %d exceeds scan limit %d", ss.size, int64(cfg.MaxSize)))
		return gomilter.RespAccept
	}

	v, err := s.scan(ss, scorer, rep)
	if err != nil {
		rep.Err = err
		kind := "scan"
		if errors.Is(err, errScanTimeout) {
			kind = "timeout"
		}
		s.metrics.errors.WithLabelValues(kind).Inc()
		rep.Action = "error"
		if cfg.OnError == OnErrorAccept {
			skipped("scan failed")
			return gomilter.RespAccept
		}
		rep.Reply = "451 4.7.1 " + cfg.TempfailText
		return reply(rep.Reply)
	}
	rep.Verdict = &v

	switch v.Action {
	case spam.Reject:
		if cfg.HoldQuarantine && !outbound {
			rep.Action = "quarantine"
			s.editHeaders(ss, m, s.headersFor(ss, v))
			reason := fmt.Sprintf("spam score %.1f", v.Score)
			if err := m.Quarantine(reason); err != nil {
				s.metrics.errors.WithLabelValues("reply").Inc()
			}
			return gomilter.RespAccept
		}
		rep.Action = "reject"
		rep.Reply = "550 5.7.1 " + cfg.RejectText
		return reply(rep.Reply)
	case spam.Greylist:
		if !outbound {
			rep.Action = "greylist"
			rep.Reply = "451 4.7.1 " + cfg.TempfailText
			return reply(rep.Reply)
		}
	}
	// Outbound mail from our own users carries no spam headers to the world.
	if outbound {
		rep.Action = "accept"
		s.stripForged(ss, m)
		return gomilter.RespAccept
	}
	rep.Action = "accept"
	switch {
	case v.Action == spam.RewriteSubject:
		rep.Action = "rewrite subject"
	case v.Action == spam.AddHeader || v.IsSpam:
		rep.Action = "add header"
	}
	s.editHeaders(ss, m, s.headersFor(ss, v))
	if v.Action == spam.RewriteSubject && v.Subject != "" {
		// Index 1: the first Subject; Postfix adds it when there was none.
		// The engine's subject is decoded text: encode it again (RFC 2047).
		subj := sanitizeHeaderValue(v.Subject)
		if !isASCII(subj) {
			subj = mime.QEncoding.Encode("utf-8", subj)
		}
		if err := m.ChangeHeader(1, "Subject", fieldValue("Subject", subj)); err != nil {
			s.metrics.errors.WithLabelValues("reply").Inc()
		}
	}
	return gomilter.RespAccept
}

// scan runs the scorer within scan_timeout. A scorer that ignores its context
// is abandoned at the deadline so Postfix is answered in time.
func (s *Server) scan(ss *session, scorer Scorer, rep *Report) (spam.Verdict, error) {
	if ss.builder == nil { // no header and no body: still a message
		ss.builder = scorer.NewBuilder()
	}
	msg, err := ss.builder.Finish()
	ss.builder = nil
	if err != nil {
		s.metrics.errors.WithLabelValues("builder").Inc()
		return spam.Verdict{}, fmt.Errorf("build message: %w", err)
	}
	in := &spam.Input{
		Message:    msg,
		ClientIP:   rep.ClientIP,
		ClientHost: ss.clientHost,
		Helo:       ss.helo,
		MailFrom:   ss.from,
		Rcpts:      ss.rcpts,
		AuthUser:   rep.AuthUser,
		QueueID:    rep.QueueID,
	}
	if n := ss.macros["{client_name}"]; n != "" {
		in.ClientHost = n
	}
	// Per-user Bayes needs one owner: a message for several recipients is
	// classified with the global table only.
	if len(ss.rcpts) == 1 {
		in.User = strings.ToLower(ss.rcpts[0])
	}
	timeout := s.config().ScanTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout.D())
	defer cancel()
	type result struct {
		v   spam.Verdict
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		defer msg.Close()
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("scorer panic: %v", p)}
			}
		}()
		v, err := scorer.Score(ctx, in)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		s.metrics.scanSeconds.Observe(time.Since(start).Seconds())
		if r.err != nil && ctx.Err() != nil {
			return r.v, fmt.Errorf("%w after %s: %w", errScanTimeout, timeout, r.err)
		}
		return r.v, r.err
	case <-ctx.Done():
		s.metrics.scanSeconds.Observe(time.Since(start).Seconds())
		return spam.Verdict{}, fmt.Errorf("%w after %s", errScanTimeout, timeout)
	}
}

// editHeaders removes the forged fields (stripSpamFields, stripForged) and
// adds ours.
func (s *Server) editHeaders(ss *session, m *gomilter.Modifier, add []spam.Header) {
	if !s.stripSpamFields(ss, m) || !s.stripForged(ss, m) {
		return
	}
	for _, h := range add {
		if err := m.AddHeader(h.Name, fieldValue(h.Name, h.Value)); err != nil {
			s.metrics.errors.WithLabelValues("reply").Inc()
			return
		}
	}
}

// stripSpamFields removes every inbound X-Spam-* field (spoof protection:
// Sieve scripts trust these). CHGHEADER's index counts per name from 1; we
// delete from the highest index down so no deletion shifts the next. It
// reports whether every edit was sent.
func (s *Server) stripSpamFields(ss *session, m *gomilter.Modifier) bool {
	t := &ss.edits
	for _, key := range t.spamOrder {
		c := t.spam[key]
		for i := c.n; i >= 1; i-- {
			if err := m.ChangeHeader(i, c.name, ""); err != nil {
				s.metrics.errors.WithLabelValues("reply").Inc()
				return false
			}
		}
	}
	return true
}

// stripForged removes every inbound Authentication-Results claiming our
// authserv-id: RFC 8601 §5 requires it whoever sent the message, so also for
// authenticated mail we pass without headers of our own (local recipients'
// MUAs trust those fields). Highest index first, as in stripSpamFields; it
// reports whether every edit was sent.
func (s *Server) stripForged(ss *session, m *gomilter.Modifier) bool {
	t := &ss.edits
	for i := len(t.arOurs) - 1; i >= 0; i-- {
		if err := m.ChangeHeader(t.arOurs[i], "Authentication-Results", ""); err != nil {
			s.metrics.errors.WithLabelValues("reply").Inc()
			return false
		}
	}
	return true
}

// fieldValue is a value we add or change as it goes to the MTA: one
// logical line (sanitizeHeaderValue), the space after the colon in front
// (with SMFIP_HDR_LEADSPC the MTA no longer inserts one), folded.
func fieldValue(name, v string) string {
	return header.Fold(name, leadSpace(sanitizeHeaderValue(v)))
}

// leadSpace puts the space after the colon in front of a value we add or
// change: with SMFIP_HDR_LEADSPC the MTA no longer inserts one.
func leadSpace(v string) string { return " " + v }

// headersFor renders the verdict: Authentication-Results when the
// authentication checks ran, then SpamAssassin's X-Spam-* fields.
func (s *Server) headersFor(ss *session, v spam.Verdict) []spam.Header {
	if s.opts.HeaderEdits != nil {
		return s.opts.HeaderEdits(v)
	}
	var hs []spam.Header
	id := s.authservID(ss)
	if ar := authcheck.AuthResults(id, v.Symbols); ar != "" && id != "" {
		hs = append(hs, spam.Header{Name: "Authentication-Results", Value: ar})
	}
	_, add := spam.HeaderEdits(v, nil, spam.HeaderOptions{Hostname: id})
	return append(hs, add...)
}

// authservID names this MTA in Authentication-Results and
// X-Spam-Checker-Version: the configured id, else Postfix's $myhostname (j).
func (s *Server) authservID(ss *session) string {
	if id := s.config().AuthservID; id != "" {
		return id
	}
	return ss.macros["j"]
}

// sanitizeHeaderValue keeps a value one logical line: folds (CRLF + WSP) stay,
// any other CR/LF/NUL becomes a space, so a hostile rule description or
// subject cannot inject header fields.
func sanitizeHeaderValue(v string) string {
	v = strings.ReplaceAll(v, "\r\n\t", "\x01\t")
	v = strings.ReplaceAll(v, "\r\n ", "\x01 ")
	v = strings.Map(func(r rune) rune {
		switch r {
		case '\r', '\n', 0:
			return ' '
		}
		return r
	}, v)
	return strings.ReplaceAll(v, "\x01", "\r\n")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// reply builds an SMFIR_REPLYCODE response; '%' is Postfix's escape character
// in reply text.
func reply(text string) gomilter.Response {
	text = strings.ReplaceAll(sanitizeHeaderValue(text), "%", "%%")
	return gomilter.NewResponseStr('y', text)
}

func (s *Server) logMessage(r Report) {
	attrs := []any{
		"queue_id", r.QueueID,
		"client", r.Client,
		"from", r.From,
		"rcpts", len(r.Rcpts),
		"size", r.Size,
		"action", r.Action,
		"elapsed", r.Elapsed.Round(time.Microsecond),
	}
	if r.AuthUser != "" {
		attrs = append(attrs, "auth", r.AuthUser)
	}
	if v := r.Verdict; v != nil {
		syms := make([]string, 0, len(v.Symbols))
		for _, sym := range v.Symbols {
			syms = append(syms, fmt.Sprintf("%s(%.2f)", sym.Name, sym.Score))
		}
		attrs = append(attrs, "score", fmt.Sprintf("%.2f", v.Score), "required", fmt.Sprintf("%.1f", v.Required), "symbols", strings.Join(syms, ","))
	}
	if r.Reply != "" {
		attrs = append(attrs, "reply", r.Reply)
	}
	level := slog.LevelInfo
	if r.Err != nil {
		attrs = append(attrs, "err", r.Err)
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "milter", attrs...)
}
