package lmtpd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
)

// vacationSkip returns why no vacation reply may be sent (RFC 5230 §4.5, RFC 3834
// §2), or "" when one may. Pigeonhole's checks: no reply to the null sender,
// MAILER-DAEMON and list/owner addresses, list or bulk mail, automatic messages,
// our own addresses, or mail not addressed to the user at all.
func vacationSkip(from string, hdr []field, user *directory.User, act *Action, rcpt string) string {
	if from == "" {
		return "null sender"
	}
	local, _, _ := strings.Cut(strings.ToLower(from), "@")
	switch {
	case local == "mailer-daemon", local == "postmaster", local == "listserv", local == "majordomo",
		strings.HasPrefix(local, "owner-"), strings.HasSuffix(local, "-request"),
		strings.HasSuffix(local, "-owner"), strings.HasSuffix(local, "-bounces"):
		return "system or list sender " + from
	}
	for _, f := range hdr {
		n := strings.ToLower(f.Name)
		v := strings.ToLower(f.Value)
		switch {
		case n == "auto-submitted" && v != "no":
			return "auto-submitted message"
		case n == "precedence" && (v == "bulk" || v == "list" || v == "junk"):
			return "precedence " + v
		case n == "list-id", n == "list-post", n == "list-unsubscribe", n == "list-help", n == "list-owner":
			return "mailing list message (" + f.Name + ")"
		case n == "x-auto-response-suppress" && (strings.Contains(v, "oof") || strings.Contains(v, "all")):
			return "X-Auto-Response-Suppress"
		case n == "x-spam-flag" && v == "yes":
			return "spam"
		}
	}
	own := ownAddresses(user, act, rcpt)
	if own[strings.ToLower(from)] {
		return "message from the user's own address"
	}
	// The user must be an explicit recipient (To/Cc/Bcc/Resent-*), else the mail
	// came through a list or alias nobody should get an auto-reply for.
	for _, f := range hdr {
		switch strings.ToLower(f.Name) {
		case "to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc":
			addrs, err := mail.ParseAddressList(f.Value)
			if err != nil {
				for _, w := range strings.FieldsFunc(f.Value, func(r rune) bool { return r == ',' || r == ' ' || r == '<' || r == '>' }) {
					if own[strings.ToLower(w)] {
						return ""
					}
				}
				continue
			}
			for _, a := range addrs {
				if own[strings.ToLower(a.Address)] {
					return ""
				}
			}
		}
	}
	return "user is not an explicit recipient"
}

// ownAddresses are the user's addresses, the vacation :addresses and :from, and the
// envelope recipient as given (alice+lists@ counts as alice's own).
func ownAddresses(user *directory.User, act *Action, rcpt string) map[string]bool {
	m := map[string]bool{}
	if rcpt != "" {
		m[strings.ToLower(rcpt)] = true
	}
	for _, a := range user.Addresses {
		m[strings.ToLower(a)] = true
	}
	for _, a := range act.Addresses {
		m[strings.ToLower(a)] = true
	}
	if act.From != "" {
		if a, err := mail.ParseAddress(act.From); err == nil {
			m[strings.ToLower(a.Address)] = true
		}
	}
	return m
}

// vacationKey is the store key tracking one reply per period (RFC 5230 §4.2: per
// sender and :handle; the handle defaults to a hash of the reason and subject).
func vacationKey(user *directory.User, act *Action, sender string) string {
	h := act.Handle
	if h == "" {
		s := sha256.Sum256([]byte(act.Subject + "\x00" + act.Reason + "\x00" + act.From))
		h = hex.EncodeToString(s[:8])
	}
	return "vacation:" + user.Login + ":" + h + ":" + strings.ToLower(sender)
}

// buildVacation composes the reply (RFC 5230 §5, RFC 3834 §3).
func buildVacation(user *directory.User, rcpt, sender string, hdr []field, act *Action, host string, now time.Time) []byte {
	from := act.From
	if from == "" {
		from = rcpt
		if len(user.Addresses) > 0 {
			from = user.Addresses[0]
		}
	}
	subject := act.Subject
	if subject == "" {
		orig, _ := getHeader(hdr, "Subject")
		if orig, err := new(mime.WordDecoder).DecodeHeader(orig); err == nil && orig != "" {
			subject = "Auto: " + orig
		} else {
			subject = "Automated reply"
		}
	}
	var b bytes.Buffer
	w := func(k, v string) { b.WriteString(foldField(k, headerSafe(v))) }
	w("From", from)
	w("To", "<"+sender+">")
	w("Subject", mime.QEncoding.Encode("utf-8", subject))
	w("Date", now.Format(time.RFC1123Z))
	var rnd [12]byte
	rand.Read(rnd[:])
	w("Message-ID", "<"+hex.EncodeToString(rnd[:])+".vacation@"+host+">")
	if id, ok := getHeader(hdr, "Message-ID"); ok {
		w("In-Reply-To", id)
		refs, _ := getHeader(hdr, "References")
		w("References", strings.TrimSpace(refs+" "+id))
	}
	w("Auto-Submitted", "auto-replied (vacation)")
	w("Precedence", "bulk")
	w("X-Auto-Response-Suppress", "All")
	w("MIME-Version", "1.0")
	if act.Mime {
		// :mime: the reason is a MIME entity of its own (headers included).
		b.WriteString(strings.ReplaceAll(act.Reason, "\r\n", "\n"))
		if !strings.HasSuffix(act.Reason, "\n") {
			b.WriteString("\n")
		}
		return b.Bytes()
	}
	w("Content-Type", "text/plain; charset=utf-8")
	w("Content-Transfer-Encoding", "8bit")
	b.WriteString("\n")
	b.WriteString(strings.ReplaceAll(act.Reason, "\r\n", "\n"))
	if !strings.HasSuffix(act.Reason, "\n") {
		b.WriteString("\n")
	}
	return b.Bytes()
}

// vacation sends the reply when allowed and not yet sent in this period.
func (d *Deliverer) vacation(ctx context.Context, r *rcptCtx, act *Action) string {
	if why := vacationSkip(r.from, r.hdr, r.user, act, r.rcpt); why != "" {
		return "vacation skipped: " + why
	}
	if d.Store == nil {
		return "vacation skipped: no store configured"
	}
	period := act.Period
	vc := d.Config.Vacation
	if period <= 0 {
		period = vc.DefaultPeriod.D()
	}
	if vc.MinPeriod > 0 && period < vc.MinPeriod.D() {
		period = vc.MinPeriod.D()
	}
	if vc.MaxPeriod > 0 && period > vc.MaxPeriod.D() {
		period = vc.MaxPeriod.D()
	}
	key := vacationKey(r.user, act, r.from)
	fresh, err := d.Store.SetNX(ctx, key, []byte(d.now().Format(time.RFC3339)), period)
	if err != nil {
		return fmt.Sprintf("vacation not sent: store: %v", err)
	}
	if !fresh {
		return "vacation already sent to " + r.from
	}
	msg := buildVacation(r.user, r.rcpt, r.from, r.hdr, act, d.host, d.now())
	if d.Sender == nil {
		d.Store.Delete(ctx, key)
		return "vacation not sent: no sender configured"
	}
	if err := d.Sender.Send(ctx, "", []string{r.from}, msg); err != nil {
		d.Store.Delete(ctx, key) // try again next time
		return fmt.Sprintf("vacation not sent: %v", err)
	}
	return "vacation sent to " + r.from
}
