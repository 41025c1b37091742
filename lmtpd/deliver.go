package lmtpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/lmtpd/maildir"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/dovetail-mail/dovetail/store"
)

// Deliverer runs the per-recipient pipeline: duplicate check, quarantine-by-score,
// Sieve, Maildir writes, redirect/vacation. The LMTP server and `dovetail quarantine
// release` share it, so a released message goes through the same code.
type Deliverer struct {
	Config     Config
	Directory  directory.Lookup
	Store      store.Store       // vacation and duplicate tracking; nil disables both
	Filter     Filter            // nil: no Sieve
	Quarantine *quarantine.Store // nil: quarantine actions keep into INBOX
	Sender     Sender            // redirect/vacation; nil: they are logged and dropped
	Writer     *maildir.Writer
	Logger     *slog.Logger
	Metrics    *Metrics
	Now        func() time.Time

	host string
}

func (d *Deliverer) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// init fills defaults; called by New and by users building a Deliverer by hand.
func (d *Deliverer) init() {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	d.host = d.Config.Hostname
	if d.host == "" {
		d.host, _ = os.Hostname()
	}
	if d.Writer == nil {
		d.Writer = maildir.New(maildir.Options{Fsync: d.Config.Fsync, HardLink: d.Config.HardLink, Hostname: d.host})
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
}

// Recipient is one resolved RCPT.
type Recipient struct {
	Addr   string // as given in RCPT TO (with +detail)
	User   *directory.User
	Detail string
}

// Delivery is one message for some recipients.
type Delivery struct {
	From       string
	Recipients []Recipient
	Data       []byte // as received (CRLF or LF)
	SessionID  string
	// Helo and RemoteIP describe the LMTP client for the Received header.
	Helo, RemoteIP string
	// Release delivers straight into INBOX: no Sieve, no quarantine rule, no
	// duplicate check (quarantine release).
	Release bool
}

// rcptCtx is the per-recipient state of one delivery.
type rcptCtx struct {
	rcpt, from string
	user       *directory.User
	detail     string
	hdr        []field
	// trace is what lmtpd puts in front of every stored copy (Return-Path,
	// Delivered-To, Received); one slice shared by all recipients.
	trace []byte
	mb    maildir.Mailbox
}

// Deliver delivers d and returns one error per recipient (nil = delivered).
// Statuses are reported through done as each recipient finishes so the LMTP
// reply for it can go out at once (RFC 2033 §4.2).
func (dv *Deliverer) Deliver(ctx context.Context, d *Delivery, done func(i int, err error)) {
	// No copy for what the LMTP server (readLimited) and the quarantine hand
	// over: it is LF already, and Normalize returns it as it is.
	body := maildir.Normalize(d.Data)
	hdr := parseHeader(headerBlock(body))
	queueID := postfixQueueID(hdr)
	msgID, _ := getHeader(hdr, "Message-ID")
	spam := parseSpam(hdr)
	deliveredTo := ""
	if len(d.Recipients) == 1 {
		deliveredTo = d.Recipients[0].Addr
	}
	th := traceHeaders(trace{from: d.From, deliveredTo: deliveredTo, host: dv.host, helo: d.Helo, ip: d.RemoteIP, id: d.SessionID},
		dv.Config.AddReceivedHeader, dv.now())
	// Every copy is written as its own fields in front of a slice of body, the
	// one buffer read from DATA: a large message is in memory once, however
	// many recipients, folders, header edits and forwards it has.
	full := maildir.NewMessage(th, body)
	for i, rc := range d.Recipients {
		t0 := time.Now()
		r := &rcptCtx{rcpt: rc.Addr, from: d.From, user: rc.User, detail: rc.Detail, hdr: hdr, trace: th}
		res, err := dv.deliverOne(ctx, d, r, full, body, spam, msgID, queueID)
		result := "delivered"
		if err != nil {
			result = "failed"
			if rep := replyFor(rc.Addr, err, dv.Config.QuotaFullTempfail); rep.Code >= 500 {
				result = "rejected"
			} else {
				result = "tempfail"
			}
		} else if res.result != "" {
			result = res.result
		}
		dv.Metrics.observe(result, time.Since(t0), len(body))
		attrs := []any{
			slog.String("session", d.SessionID), slog.String("queue_id", queueID),
			slog.String("rcpt", rc.Addr), slog.String("user", rc.User.Login), slog.String("from", d.From),
			slog.String("message_id", msgID), slog.Int("size", len(body)), slog.String("result", result),
			slog.Duration("duration", time.Since(t0)),
		}
		if len(res.stored) > 0 {
			attrs = append(attrs, slog.String("mailboxes", strings.Join(res.stored, ",")))
		}
		if res.note != "" {
			attrs = append(attrs, slog.String("note", res.note))
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
			dv.Logger.Warn("delivery", attrs...)
		} else {
			dv.Logger.Info("delivery", attrs...)
		}
		done(i, err)
	}
}

// outcome describes what happened to one recipient's copy.
type outcome struct {
	result string   // delivered|quarantined|discarded|duplicate|redirected
	stored []string // mailboxes written
	note   string
}

func (dv *Deliverer) mailbox(u *directory.User, rcpt string) (maildir.Mailbox, error) {
	root, err := mailLocation(dv.Config.MailLocation, u, rcpt)
	if err != nil {
		return maildir.Mailbox{}, err
	}
	uid, gid := u.UID, u.GID
	if uid <= 0 && dv.Config.MailUID > 0 {
		// A virtual user without a uid of its own: mail_uid's, as Dovecot does, so
		// Dovecot running as that user can read what root wrote.
		uid, gid = dv.Config.MailUID, dv.Config.MailGID
	}
	mb := maildir.Mailbox{
		Root:       root,
		Home:       u.Home,
		UID:        uid,
		GID:        gid,
		Chown:      os.Geteuid() == 0 && uid > 0,
		QuotaBytes: u.Quota,
	}
	if mb.QuotaBytes == 0 {
		mb.QuotaBytes = int64(dv.Config.DefaultQuota)
	}
	return mb, nil
}

// mailLocation expands mail_location for one user, as Dovecot does: a leading "~"
// is the home, %u the login, %n its local part, %d its domain (from the login, else
// from the recipient address), %h the home, %% a percent sign. A value that is
// empty or could leave the intended directory ("/", "..") is a temporary failure:
// the directory has a broken entry and the mail must wait, not go astray.
func mailLocation(loc string, u *directory.User, rcpt string) (string, error) {
	if loc == "~" || strings.HasPrefix(loc, "~/") || strings.Contains(loc, "%h") {
		if u.Home == "" || !filepath.IsAbs(u.Home) {
			return "", wrapTemp("user %s has no absolute home directory (%q)", u.Login, u.Home)
		}
	}
	loc = expandHome(loc, u.Home)
	if !strings.Contains(loc, "%") {
		return loc, nil
	}
	local, domain, ok := strings.Cut(u.Login, "@")
	if !ok {
		_, domain, _ = strings.Cut(rcpt, "@")
	}
	domain = strings.ToLower(domain)
	var b strings.Builder
	for i := 0; i < len(loc); i++ {
		if loc[i] != '%' || i+1 == len(loc) {
			b.WriteByte(loc[i])
			continue
		}
		i++
		var v string
		switch loc[i] {
		case '%':
			b.WriteByte('%')
			continue
		case 'h':
			b.WriteString(u.Home)
			continue
		case 'u':
			v = u.Login
		case 'n':
			v = local
		case 'd':
			v = domain
		default:
			b.WriteByte('%')
			b.WriteByte(loc[i])
			continue
		}
		if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\x00") {
			return "", wrapTemp("user %s: %%%c expands to the unusable path element %q", u.Login, loc[i], v)
		}
		b.WriteString(v)
	}
	return filepath.Clean(b.String()), nil
}

func (dv *Deliverer) deliverOne(ctx context.Context, d *Delivery, r *rcptCtx, full *maildir.Message, body []byte,
	spam spamInfo, msgID, queueID string) (outcome, error) {
	var out outcome
	mb, err := dv.mailbox(r.user, r.rcpt)
	if err != nil {
		return out, err
	}
	r.mb = mb
	if d.Release {
		p, err := dv.Writer.Deliver(r.mb, maildir.Target{}, full)
		if err != nil {
			return out, err
		}
		out.stored = []string{"INBOX"}
		out.note = "released " + filepath.Base(p)
		return out, nil
	}
	dupKey := ""
	if dv.Store != nil && dv.Config.DuplicatePeriod > 0 && msgID != "" {
		dupKey = "lmtp-dup:" + r.user.Login + ":" + shortHash(msgID)
		if _, err := dv.Store.Get(ctx, dupKey); err == nil {
			out.result = "duplicate"
			out.note = "duplicate Message-ID suppressed"
			return out, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			// Fail open: a store outage must not stop mail; at worst a duplicate.
			dv.Logger.Warn("duplicate check failed", "error", err)
			dupKey = ""
		}
	}
	if dv.Config.QuarantineScore > 0 && spam.HasScore && spam.Score >= dv.Config.QuarantineScore && dv.Quarantine != nil {
		out, err = dv.quarantine(ctx, r, body, spam, msgID, queueID, fmt.Sprintf("spam score %.1f >= %.1f", spam.Score, dv.Config.QuarantineScore))
	} else {
		out, err = dv.filterAndStore(ctx, r, full, body, spam, msgID, queueID)
	}
	if err == nil && dupKey != "" {
		if err := dv.Store.Set(ctx, dupKey, []byte("1"), dv.Config.DuplicatePeriod.D()); err != nil {
			dv.Logger.Warn("duplicate mark failed", "error", err)
		}
	}
	return out, err
}

func (dv *Deliverer) quarantine(ctx context.Context, r *rcptCtx, body []byte, spam spamInfo, msgID, queueID, reason string) (outcome, error) {
	subj, _ := getHeader(r.hdr, "Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
		subj = dec // the admin reads it in a terminal table
	}
	e := &quarantine.Entry{
		Recipient: r.rcpt, User: r.user.Login, Sender: r.from, Subject: subj, Score: spam.Score,
		Symbols: spam.Symbols, Reason: reason, MessageID: msgID, QueueID: queueID,
	}
	id, err := dv.Quarantine.Add(ctx, e, body)
	if err != nil {
		return outcome{}, quarantineErr(err)
	}
	dv.Metrics.Quarantined.Inc()
	return outcome{result: "quarantined", stored: []string{"quarantine:" + id}, note: reason}, nil
}

// quarantineErr classifies a failed quarantine write: a full disk is 452 4.3.1,
// anything else 451. Unlike in a Maildir, EDQUOT is a full disk here too: the
// quarantine belongs to the service, not to the recipient, so it is no reason to
// tell the sender the recipient's mailbox is full.
func quarantineErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %v", maildir.ErrNoSpace, err)
	}
	return wrapTemp("%v", err)
}

// filterAndStore runs the filter and carries out its actions.
func (dv *Deliverer) filterAndStore(ctx context.Context, r *rcptCtx, full *maildir.Message, body []byte,
	spam spamInfo, msgID, queueID string) (outcome, error) {
	var out outcome
	defaultBox := "INBOX"
	if dv.Config.SaveToDetailMailbox && r.detail != "" {
		defaultBox = r.detail
	}
	acts := []Action{{Type: ActKeep, Implicit: true}}
	var notes []string
	var marks []Mark
	// last is the header the script left (for the implicit keep, nil: as
	// received); hdrFor(i) is the header action i delivers.
	var last *headerEdit
	hdrFor := func(int) *headerEdit { return nil }
	if dv.Filter != nil && dv.Config.Sieve.Enabled {
		v, edits, err := dv.runFilter(ctx, &FilterInput{
			User: r.user, Home: r.user.Home, From: r.from, To: r.rcpt, Message: body,
			Mailboxes: func(name string) bool { return maildir.FolderExists(r.mb, name) },
			Seen: func(ctx context.Context, id string) (bool, error) {
				if dv.Store == nil {
					return false, nil // no store configured: duplicate tracking is off
				}
				_, err := dv.Store.Get(ctx, "sieve-dup:"+r.user.Login+":"+shortHash(id))
				if errors.Is(err, store.ErrNotFound) {
					return false, nil
				}
				return err == nil, err
			},
			AsUser: r.mb.AsUser,
			Now:    dv.now(),
		})
		var te *TempError
		switch {
		case (err != nil || v != nil && len(v.Errors) > 0) && ctx.Err() != nil:
			// The run was cut short by the message's deadline (deliveryTimeout,
			// used up by earlier recipients), not by the script: no script
			// error to answer with the implicit keep, which would store the
			// message past the admin's and the user's rules for good.
			return out, wrapTemp("filter aborted: %v", ctx.Err())
		case errors.As(err, &te):
			return out, wrapTemp("%v", err)
		case err != nil:
			dv.Metrics.SieveErrors.Inc()
			dv.Logger.Error("sieve failed, implicit keep", "rcpt", r.rcpt, "user", r.user.Login, "queue_id", queueID, "error", err)
		case v != nil:
			for _, e := range v.Errors {
				dv.Metrics.SieveErrors.Inc()
				dv.Logger.Error("sieve script error, implicit keep", "rcpt", r.rcpt, "user", r.user.Login, "queue_id", queueID, "error", e)
			}
			marks = v.Marks
			if len(v.Ignored) > 0 {
				notes = append(notes, "not carried out: "+strings.Join(v.Ignored, ", "))
			}
			if v.Header != nil {
				last = &headerEdit{hdr: v.Header, hlen: v.HeaderLen}
			}
			if len(v.Actions) > 0 { // nothing at all would lose the message: keep it
				acts = v.Actions
				hdrFor = func(i int) *headerEdit {
					if edits == nil {
						return last // a filter that only knows the final header
					}
					return edits[i]
				}
			}
		}
	}
	// Each stored or forwarded copy carries the header as it was when the script
	// took its action (RFC 5293 §3, as Pigeonhole): a fileinto before an edit
	// stores the header as received, a redirect after a deleteheader forwards
	// without the field.
	// Only the last copy is kept: actions that share a header are adjacent, and
	// up to 32 distinct copies of a large message must not pile up.
	var lastEdit *headerEdit
	var lastMsg *maildir.Message
	msgFor := func(i int) *maildir.Message {
		e := hdrFor(i)
		if e == nil {
			return full
		}
		if e != lastEdit {
			lastEdit, lastMsg = e, withHeader(r.trace, body, e)
		}
		return lastMsg
	}
	// partsFor(i) is the message action i forwards (no trace fields), in parts.
	partsFor := func(i int) [][]byte {
		if e := hdrFor(i); e != nil {
			h, rest := editedParts(e, body)
			return [][]byte{h, rest}
		}
		return [][]byte{body}
	}
	// Reject wins over everything: the sender gets the LMTP error, nothing is stored.
	for _, a := range acts {
		if a.Type == ActReject {
			return out, &RejectError{Reason: a.Reason}
		}
	}
	stored := false
	// kept reports whether a failed store may be passed over: once one copy is safe
	// the recipient is answered 250 (as Pigeonhole's saved_mail) — failing now would
	// make Postfix retry and store the saved copies a second time.
	kept := func(what string, err error) bool {
		if !stored {
			return false
		}
		notes = append(notes, fmt.Sprintf("%s failed after another copy was stored: %v", what, err))
		dv.Logger.Error("store failed after another copy was saved", "rcpt", r.rcpt, "user", r.user.Login,
			"queue_id", queueID, "target", what, "error", err)
		return true
	}
	for i := range acts {
		a := &acts[i]
		switch a.Type {
		case ActKeep, ActFileinto:
			box := a.Mailbox
			if box == "" {
				box = defaultBox
			}
			name, err := dv.store(r, box, a, msgFor(i))
			if errors.Is(err, maildir.ErrNoMailbox) || errors.Is(err, maildir.ErrBadName) {
				// Pigeonhole: a failed fileinto is a runtime error → keep in INBOX.
				notes = append(notes, fmt.Sprintf("%s: %v; kept in INBOX", box, err))
				name, err = dv.store(r, "INBOX", &Action{Flags: a.Flags}, msgFor(i))
			}
			if err != nil {
				if kept(box, err) {
					continue
				}
				return out, err
			}
			out.stored = append(out.stored, name)
			stored = true
		case ActQuarantine:
			if dv.Quarantine == nil {
				notes = append(notes, "quarantine requested but not configured; kept in INBOX")
				name, err := dv.store(r, "INBOX", &Action{}, msgFor(i))
				if err != nil {
					if kept("INBOX", err) {
						continue
					}
					return out, err
				}
				out.stored = append(out.stored, name)
				stored = true
				continue
			}
			reason := a.Reason
			if reason == "" {
				reason = "sieve quarantine"
			}
			q, err := dv.quarantine(ctx, r, body, spam, msgID, queueID, reason)
			if err != nil {
				if kept("quarantine", err) {
					continue
				}
				return out, err
			}
			out.stored = append(out.stored, q.stored...)
			out.result = "quarantined"
			stored = true
		case ActDiscard:
			if out.result == "" {
				out.result = "discarded"
			}
		}
	}
	// Side effects only after the message is safe (a tempfail above means Postfix
	// retries, and we must not have sent anything yet). A quarantined message is
	// neither forwarded nor answered: the admin held it back, and a vacation reply
	// would confirm the address to a spammer.
	keepAfterAll := false
	for i := range acts {
		a := &acts[i]
		if out.result == "quarantined" && (a.Type == ActRedirect || a.Type == ActVacation) {
			notes = append(notes, a.Type+" skipped: message quarantined")
			continue
		}
		switch a.Type {
		case ActRedirect:
			note, err := dv.redirect(ctx, r, a, partsFor(i), body, msgID)
			notes = append(notes, note)
			switch {
			case err == nil:
				if !stored && out.result == "" {
					out.result = "redirected"
				}
			case errors.Is(err, errRedirectLoop):
				// Pigeonhole leaves the implicit keep standing; nothing failed.
				keepAfterAll = true
			case stored:
				// A copy is in a mailbox: a retry would store it twice (the saved_mail
				// rule above), so the failed forward is only logged.
				dv.Logger.Error("redirect failed after a copy was stored", "rcpt", r.rcpt, "user", r.user.Login,
					"queue_id", queueID, "to", a.Address, "error", err)
			case !errors.Is(err, errRedirectPermanent):
				// Pigeonhole answers a temporary submission failure with
				// SIEVE_EXEC_TEMP_FAILURE: the MTA keeps the message and retries, and
				// the redirects that did go out are marked, so they are not repeated.
				return out, wrapTemp("%v", err)
			default:
				// A permanent failure (SIEVE_EXEC_FAILURE) leaves Pigeonhole's implicit
				// keep standing: the message goes to the mailbox instead of nowhere.
				keepAfterAll = true
			}
		case ActVacation:
			notes = append(notes, dv.vacation(ctx, r, a))
		}
	}
	if keepAfterAll && !stored {
		final := full
		if last != nil {
			final = withHeader(r.trace, body, last)
		}
		name, err := dv.store(r, defaultBox, &Action{}, final)
		if (errors.Is(err, maildir.ErrNoMailbox) || errors.Is(err, maildir.ErrBadName)) && defaultBox != "INBOX" {
			name, err = dv.store(r, "INBOX", &Action{}, final)
		}
		if err != nil {
			return out, err
		}
		notes = append(notes, "redirect not made; kept in "+name)
		out.stored = append(out.stored, name)
		if out.result == "discarded" || out.result == "redirected" {
			out.result = ""
		}
	}
	if dv.Store != nil {
		for _, m := range marks {
			dv.Store.Set(ctx, "sieve-dup:"+r.user.Login+":"+shortHash(m.ID), []byte("1"), m.Period)
		}
	}
	out.note = strings.Join(notes, "; ")
	return out, nil
}

// actionHeaderFilter is a Filter that also reports, for each action of its
// verdict, the header that action delivers (nil: the message as received).
// editheader edits apply from where the script makes them on, so one verdict
// can need several headers; Verdict.Header holds only the last.
type actionHeaderFilter interface {
	filterWithHeaders(ctx context.Context, in *FilterInput) (*Verdict, []*headerEdit, error)
}

func (dv *Deliverer) runFilter(ctx context.Context, in *FilterInput) (*Verdict, []*headerEdit, error) {
	if hf, ok := dv.Filter.(actionHeaderFilter); ok {
		v, edits, err := hf.filterWithHeaders(ctx, in)
		if v != nil && edits != nil && len(edits) != len(v.Actions) {
			edits = nil // cannot happen; never pair a header with the wrong action
		}
		return v, edits, err
	}
	v, err := dv.Filter.Filter(ctx, in)
	return v, nil, err
}

// withHeader is the stored copy (trace fields + body) with body's header
// replaced by e; the rest of body is shared, not copied.
func withHeader(trace, body []byte, e *headerEdit) *maildir.Message {
	h, rest := editedParts(e, body)
	return maildir.NewMessage(trace, h, rest)
}

func (dv *Deliverer) store(r *rcptCtx, box string, a *Action, msg *maildir.Message) (string, error) {
	create := a.Create || dv.Config.AutocreateFolders
	_, err := dv.Writer.Deliver(r.mb, maildir.Target{Folder: box, Flags: a.Flags, Create: create}, msg)
	if err != nil {
		return "", err
	}
	if len(a.Flags) > 0 {
		return box + "(" + strings.Join(a.Flags, " ") + ")", nil
	}
	return box, nil
}

// errRedirectPermanent marks a redirect that will not work on a retry either.
var errRedirectPermanent = errors.New("permanent failure")

// errRedirectLoop marks a redirect not made because the message came back.
var errRedirectLoop = fmt.Errorf("mail loop: %w", errRedirectPermanent)

// redirect forwards data (the message with the header the action saw, in
// parts) once. As Pigeonhole's redirect, the forward is tracked in the store
// under an id built from the Message-ID (one derived from body when the message
// has none, and added to the copy), the recipient, the target,
// Resent-Message-ID (or Resent-From) and List-Id, so a retried delivery does
// not forward twice; and the copy is marked with X-Sieve-Redirected-From, so a
// message that comes back to this recipient is not forwarded again. The error
// is nil when the message went out or had gone out before; it wraps
// errRedirectPermanent when retrying cannot help (a loop too: the implicit
// keep stands, as in Pigeonhole).
func (dv *Deliverer) redirect(ctx context.Context, r *rcptCtx, a *Action, data [][]byte, body []byte, msgID string) (string, error) {
	if dv.Sender == nil {
		return "redirect to " + a.Address + " impossible: no sender configured",
			fmt.Errorf("redirect to %s: no sender configured: %w", a.Address, errRedirectPermanent)
	}
	rcpt := headerSafe(r.rcpt)
	for _, f := range r.hdr {
		if strings.EqualFold(f.Name, "X-Sieve-Redirected-From") && sameAddress(f.Value, rcpt) {
			note := "not forwarding to " + a.Address + ": X-Sieve-Redirected-From shows a mail loop"
			return note, fmt.Errorf("redirect to %s: %w", a.Address, errRedirectLoop)
		}
	}
	var add strings.Builder
	add.WriteString("X-Sieve-Redirected-From: " + rcpt + "\n")
	if msgID == "" {
		// Derived from the message, not random: Postfix's retry of the same
		// message must find the marker of its first attempt.
		h := sha256.Sum256(body)
		msgID = "<" + hex.EncodeToString(h[:16]) + ".sieve-redirect@" + hostToken(dv.host, "localhost") + ">"
		add.WriteString("Message-ID: " + msgID + "\n")
	}
	resent, ok := getHeader(r.hdr, "Resent-Message-ID")
	if !ok {
		resent, _ = getHeader(r.hdr, "Resent-From")
	}
	listID, _ := getHeader(r.hdr, "List-Id")
	key := ""
	if dv.Store != nil {
		id := strings.Join([]string{msgID, strings.ToLower(r.rcpt), strings.ToLower(a.Address), resent, listID}, "\x00")
		k := "redirect:" + r.user.Login + ":" + shortHash(id)
		fresh, err := dv.Store.SetNX(ctx, k, []byte("1"), 24*time.Hour)
		switch {
		case err == nil && !fresh:
			return "redirect to " + a.Address + " already done", nil
		case err == nil:
			key = k
		}
	}
	out := append([][]byte{[]byte(add.String())}, data...)
	if err := sendParts(ctx, dv.Sender, r.from, []string{a.Address}, out); err != nil {
		if key != "" {
			// The marker claimed the forward before it was sent (so two deliveries
			// at once do not both send); a forward that did not happen must not be
			// remembered as done, or the retry would skip it. ctx may be what ran
			// out.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if derr := dv.Store.Delete(dctx, key); derr != nil {
				dv.Logger.Warn("redirect marker not removed", "rcpt", r.rcpt, "to", a.Address, "error", derr)
			}
			cancel()
		}
		dv.Logger.Error("redirect failed", "rcpt", r.rcpt, "to", a.Address, "error", err)
		// The submission's own error is text only (%v): its reply, an
		// *smtp.SMTPError for the redirect target, must never become the LMTP
		// reply for this recipient (replyFor relays any SMTPError it finds).
		if permanentSendError(err) {
			err = fmt.Errorf("redirect to %s: %w: %v", a.Address, errRedirectPermanent, err)
		} else {
			err = fmt.Errorf("redirect to %s: %v", a.Address, err)
		}
		return "redirect to " + a.Address + " failed: " + err.Error(), err
	}
	return "redirected to " + a.Address, nil
}

// sameAddress compares a header's address (possibly in angle brackets) with an
// envelope address, ignoring case.
func sameAddress(hv, addr string) bool {
	hv = strings.TrimSpace(hv)
	hv = strings.TrimSuffix(strings.TrimPrefix(hv, "<"), ">")
	return hv != "" && strings.EqualFold(strings.TrimSpace(hv), addr)
}

// shortHash keeps store keys bounded whatever a sender puts in a Message-ID.
func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:12])
}

// editedParts is body (LF) with its first e.hlen bytes replaced by e.hdr, as
// two parts: the new header (LF) and the rest of body, which stays shared.
// hlen comes from the filter's own parse: lmtpd's headerBlock stops elsewhere
// (at a blank line past a malformed line, or at maxHeaderScan), and splicing at
// its end would drop or repeat the lines in between.
func editedParts(e *headerEdit, body []byte) (hdr, rest []byte) {
	hlen := min(max(e.hlen, 0), len(body))
	return bytes.ReplaceAll(e.hdr, []byte("\r\n"), []byte("\n")), body[hlen:]
}
