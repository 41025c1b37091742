package sieve

import (
	"context"
	"mime"
	"strings"
	"testing"
)

func vacationAction(t *testing.T, src string, config map[string]string) Action {
	t.Helper()
	res, err := mustCompile(t, src).Execute(context.Background(), &Env{
		Message:  NewMessage([]byte(testMsg)),
		Envelope: Envelope{From: "alice@example.org", To: "bob@example.net"},
		Config:   config,
	})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	for _, a := range res.Actions {
		if a.Type == "vacation" {
			return a
		}
	}
	t.Fatalf("no vacation action in %q", actSummary(res))
	return Action{}
}

// TestVacationLongPeriodClamped: a period longer than time.Duration holds
// (":days 999999", the "answer each sender once" idiom) used to overflow to a
// negative duration and end up at the minimum period, one reply a day,
// instead of at the maximum.
func TestVacationLongPeriodClamped(t *testing.T) {
	const maxDays = 60
	for _, src := range []string{
		`require "vacation"; vacation :days 999999 "away";`,
		`require "vacation"; vacation :days 18446744073709551615 "away";`,
		`require "vacation-seconds"; vacation :seconds 99999999999 "away";`,
	} {
		if got := vacationAction(t, src, nil).Seconds; got != maxDays*86400 {
			t.Errorf("%s: period %d s, want the maximum %d s", src, got, maxDays*86400)
		}
	}
	// without a maximum the long period stands
	a := vacationAction(t, `require "vacation"; vacation :days 999999 "away";`, map[string]string{"sieve_vacation_max_period": "0"})
	if a.Seconds != 999999*86400 {
		t.Errorf("unbounded: period %d s, want %d", a.Seconds, 999999*86400)
	}
}

// TestVacationReplyHeaderInjection: the To of the reply quotes the
// original sender's display name, which arrives RFC 2047-encoded and can
// decode to a line break. Written out decoded, it added header fields of the
// sender's choosing (and raw 8-bit text) to a reply sent in the user's name.
// The script's :handle (often built from the subject) went into the
// Message-ID verbatim, with the same effect, and made every reply with that
// handle share one Message-ID.
func TestVacationReplyHeaderInjection(t *testing.T) {
	msg := "From: =?utf-8?q?J=C3=BCrgen=0D=0ABcc=3A_victim=40example.com=0D=0AX-Evil=3A?= <alice@example.org>\r\n" +
		"To: bob@example.net\r\nSubject: hi\r\nMessage-ID: <1@example.org>\r\n\r\nbody\r\n"
	a := &Action{Type: "vacation", Reason: "away", Handle: "h\r\nX-Injected: 1"}
	env := &Env{Message: NewMessage([]byte(msg)), Envelope: Envelope{From: "alice@example.org", To: "bob@example.net"}}
	out, ok, why := VacationReply(env, a)
	if !ok {
		t.Fatalf("no reply: %s", why)
	}
	m := NewMessage(out.Data)
	for _, h := range m.Headers() {
		switch strings.ToLower(h.Name) {
		case "bcc", "x-evil", "x-injected":
			t.Errorf("injected header %s: %s", h.Name, h.Value)
		}
		for i := 0; i < len(h.Value); i++ {
			if h.Value[i] >= 0x80 {
				t.Errorf("8-bit header %s: %q", h.Name, h.Value)
				break
			}
		}
	}
	to := headerValues(m.Headers(), "to")
	if len(to) != 1 || !strings.HasSuffix(to[0], "<alice@example.org>") || !strings.Contains(decodeHeader(to[0]), "Jürgen") {
		t.Errorf("To: %q", to)
	}
	env.Envelope.From, env.Message = "carol@example.org", NewMessage([]byte(strings.Replace(msg, "<alice@", "<carol@", 1)))
	out2, ok, _ := VacationReply(env, a)
	if !ok {
		t.Fatal("no second reply")
	}
	id1 := headerValues(m.Headers(), "message-id")
	id2 := headerValues(NewMessage(out2.Data).Headers(), "message-id")
	if len(id1) != 1 || len(id2) != 1 || id1[0] == id2[0] {
		t.Errorf("Message-IDs %q and %q: want one each, distinct", id1, id2)
	}
}

// TestRejectMessageSubjectInjection: the rejection quoted the decoded
// subject of the rejected message verbatim, so an encoded line break in it
// added header fields to the MDN.
func TestRejectMessageSubjectInjection(t *testing.T) {
	msg := "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe=0D=0ABcc=3A_victim=40example.com?=\r\n\r\nbody\r\n"
	env := &Env{Message: NewMessage([]byte(msg)), Envelope: Envelope{From: "alice@example.org", To: "bob@example.net"}}
	_, data, ok := RejectMessage(env, &Action{Type: "reject", Reason: "no"})
	if !ok {
		t.Fatal("no rejection")
	}
	m := NewMessage(data)
	if v := headerValues(m.Headers(), "bcc"); len(v) > 0 {
		t.Errorf("injected Bcc: %q", v)
	}
	subj := headerValues(m.Headers(), "subject")
	if len(subj) != 1 || !strings.HasPrefix(decodeHeader(subj[0]), "Rejected: Grüße") {
		t.Errorf("Subject %q", subj)
	}
}

// TestOutgoingLongSubjectFolded: the subject of a vacation reply or a
// rejection is the original one, RFC 2047-encoded again. Go's encoder joins
// the encoded-words with spaces on one line, so a long non-ASCII subject gave
// a header line far past RFC 5322's 998 characters, which MTAs refuse or
// break in the middle of an encoded-word. The field must be folded between
// the words and still decode to the subject.
func TestOutgoingLongSubjectFolded(t *testing.T) {
	orig := strings.Repeat("Привет мир ", 60)
	msg := "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: " +
		mime.QEncoding.Encode("utf-8", orig) + "\r\nMessage-ID: <1@example.org>\r\nReferences: " +
		strings.Repeat("<a-rather-long-message-id@example.org> ", 40) + "\r\n\r\nbody\r\n"
	env := &Env{Message: NewMessage([]byte(msg)), Envelope: Envelope{From: "alice@example.org", To: "bob@example.net"}}
	out, ok, why := VacationReply(env, &Action{Type: "vacation", Reason: "away"})
	if !ok {
		t.Fatalf("no reply: %s", why)
	}
	_, rej, _ := RejectMessage(env, &Action{Type: "reject", Reason: "no"})
	for name, data := range map[string][]byte{"vacation": out.Data, "reject": rej} {
		m := NewMessage(data)
		head := string(data[:m.HeaderEnd()])
		// An encoded-word has at most 75 characters (RFC 2047 section 2): a
		// folded line holds one and the field name.
		for _, line := range strings.Split(head, "\r\n") {
			if len(line) > 100 {
				t.Errorf("%s: header line of %d characters: %.60q…", name, len(line), line)
			}
		}
		got, want := subjectOf(m), "Rejected: "+subjectOf(env.Message)
		if name == "vacation" {
			// cut at sieve_vacation_max_subject_codepoints (256)
			want = string([]rune("Auto: " + subjectOf(env.Message))[:256]) + "…"
		}
		if got != want {
			t.Errorf("%s: subject decodes to %q, want %q", name, got, want)
		}
	}
}
