package milter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// fakeScorer decides by keywords in the body and records every input.
type fakeScorer struct {
	mu     sync.Mutex
	inputs []spam.Input
	texts  []string
}

func (f *fakeScorer) NewBuilder() *message.Builder {
	return message.NewBuilder(message.DefaultLimits())
}

func (f *fakeScorer) Score(ctx context.Context, in *spam.Input) (spam.Verdict, error) {
	rc, err := in.Message.Open()
	if err != nil {
		return spam.Verdict{}, err
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	f.mu.Lock()
	f.inputs = append(f.inputs, *in)
	f.texts = append(f.texts, string(raw))
	f.mu.Unlock()
	v := spam.Verdict{Required: 5, Action: spam.NoAction, Autolearn: "no"}
	body := string(raw)
	switch {
	case strings.Contains(body, "SLOW"):
		<-ctx.Done()
		return v, ctx.Err()
	case strings.Contains(body, "FAIL"):
		return v, io.ErrUnexpectedEOF
	case strings.Contains(body, "GTUBE"):
		v.Score, v.Action = 1000, spam.Reject
		v.Symbols = []spam.Symbol{{Name: "GTUBE", Score: 1000}}
	case strings.Contains(body, "GREY"):
		v.Score, v.Action = 8, spam.Greylist
	case strings.Contains(body, "SPAMMY"):
		v.Score, v.Action = 7.3, spam.AddHeader
		v.Symbols = []spam.Symbol{{Name: "A", Score: 3.3}, {Name: "B", Score: 4}}
	case strings.Contains(body, "SUBJUTF"):
		v.Score, v.Action, v.Subject = 6, spam.RewriteSubject, "***SPAM*** こんにちは"
	case strings.Contains(body, "SUBJECT"):
		v.Score, v.Action, v.Subject = 6, spam.RewriteSubject, "***SPAM*** hello"
	default:
		v.Score = 0.5
		v.Symbols = []spam.Symbol{{Name: "HAM", Score: 0.5}}
	}
	v.IsSpam = v.Score >= v.Required
	return v, nil
}

type harness struct {
	srv     *Server
	addr    string
	scorer  *fakeScorer
	reg     *prometheus.Registry
	mu      sync.Mutex
	reports []Report
	logs    *testenv.LogBuffer
}

func start(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	f := &fakeScorer{}
	h := startScorer(t, f, mod)
	h.scorer = f
	return h
}

// startScorer is start with another scorer (h.scorer stays nil).
func startScorer(t *testing.T, scorer Scorer, mod func(*Config)) *harness {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen.Address = "127.0.0.1:0"
	cfg.ScanTimeout = config.Duration(200 * time.Millisecond)
	if mod != nil {
		mod(&cfg)
	}
	h := &harness{reg: prometheus.NewRegistry(), logs: &testenv.LogBuffer{}}
	log := slog.New(slog.NewTextHandler(h.logs, nil))
	srv, err := New(cfg, scorer, log, h.reg, Options{OnMessage: func(r Report) {
		h.mu.Lock()
		h.reports = append(h.reports, r)
		h.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.srv, h.addr = srv, ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return h
}

func (h *harness) session(t *testing.T) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", h.addr, gomilter.ClientOptions{
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mustContinue(t, s.Macros(gomilter.CodeConn, "j", "mx.test", "{client_addr}", "192.0.2.9", "{client_name}", "client.test"))
	act, err := s.Conn("client.test", gomilter.FamilyInet, 4321, "192.0.2.9")
	checkContinue(t, act, err)
	mustContinue(t, s.Macros(gomilter.CodeHelo, "{tls_version}", "TLSv1.3"))
	act, err = s.Helo("helo.test")
	checkContinue(t, act, err)
	return s
}

func mustContinue(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func checkContinue(t *testing.T, act *gomilter.Action, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if act.Code != gomilter.ActContinue {
		t.Fatalf("got action %c, want continue", act.Code)
	}
}

type msg struct {
	from, auth, queueID string
	rcpts               []string
	header              [][2]string
	body                string
}

func send(t *testing.T, s *gomilter.ClientSession, m msg) ([]gomilter.ModifyAction, *gomilter.Action) {
	t.Helper()
	kv := []string{"{mail_addr}", m.from}
	if m.auth != "" {
		kv = append(kv, "{auth_authen}", m.auth, "{auth_type}", "PLAIN")
	}
	mustContinue(t, s.Macros(gomilter.CodeMail, kv...))
	act, err := s.Mail(m.from, nil)
	checkContinue(t, act, err)
	for i, r := range m.rcpts {
		kv := []string{"{rcpt_addr}", r}
		if i > 0 {
			kv = append(kv, "i", m.queueID) // Postfix: i from the 2nd RCPT on
		}
		mustContinue(t, s.Macros(gomilter.CodeRcpt, kv...))
		act, err := s.Rcpt(r, nil)
		checkContinue(t, act, err)
	}
	var hdr textproto.Header
	for i := len(m.header) - 1; i >= 0; i-- {
		hdr.Add(m.header[i][0], m.header[i][1])
	}
	mustContinue(t, s.Macros(gomilter.CodeEOH, "i", m.queueID))
	act, err = s.Header(hdr)
	checkContinue(t, act, err)
	mustContinue(t, s.Macros(gomilter.CodeEOB, "i", m.queueID))
	mods, act, err := s.BodyReadFrom(strings.NewReader(m.body))
	if err != nil {
		t.Fatal(err)
	}
	return mods, act
}

func baseMsg(body string) msg {
	return msg{
		from: "sender@remote.test", rcpts: []string{"alice@example.test"}, queueID: "4ABC123",
		// As Postfix sends them under SMFIP_HDR_LEADSPC.
		header: [][2]string{{"From", " sender@remote.test"}, {"Subject", " hello"}},
		body:   body,
	}
}

// headerAdds returns the added fields with the one leading space every value
// carries under SMFIP_HDR_LEADSPC removed ("!" marks a value without it).
func headerAdds(mods []gomilter.ModifyAction) map[string]string {
	m := map[string]string{}
	for _, a := range mods {
		if a.Code == gomilter.ActAddHeader {
			v, ok := strings.CutPrefix(a.HeaderValue, " ")
			if !ok {
				v = "!" + v
			}
			m[a.HeaderName] = v
		}
	}
	return m
}

func TestDecisions(t *testing.T) {
	for _, skip := range []bool{true, false} {
		t.Run(fmt.Sprintf("skip_header_replies=%v", skip), func(t *testing.T) {
			testDecisions(t, start(t, func(c *Config) { c.SkipHeaderReplies = skip }))
		})
	}
}

func testDecisions(t *testing.T, h *harness) {
	for _, tc := range []struct {
		name      string
		body      string
		wantCode  gomilter.ActionCode
		wantReply string
		wantFlag  string // X-Spam-Flag added
		wantStat  string // X-Spam-Status prefix
	}{
		{"ham", "hello there\r\n", gomilter.ActAccept, "", "", "No, score=0.5 required=5.0 tests=HAM autolearn=no"},
		{"spammy", "SPAMMY offer\r\n", gomilter.ActAccept, "", "YES", "Yes, score=7.3 required=5.0 tests=A,B"},
		{"gtube", "GTUBE\r\n", gomilter.ActReplyCode, "550 5.7.1 Message rejected as spam", "", ""},
		{"greylist", "GREY\r\n", gomilter.ActReplyCode, "451 4.7.1 Try again later", "", ""},
		{"scan error", "FAIL\r\n", gomilter.ActReplyCode, "451 4.7.1 Try again later", "", ""},
		{"scan timeout", "SLOW\r\n", gomilter.ActReplyCode, "451 4.7.1 Try again later", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := h.session(t)
			mods, act := send(t, s, baseMsg(tc.body))
			if act.Code != tc.wantCode {
				t.Fatalf("action %c, want %c", act.Code, tc.wantCode)
			}
			if tc.wantReply != "" {
				if got := strings.TrimSpace(strings.Join([]string{itoa(act.SMTPCode), act.SMTPText}, " ")); got != tc.wantReply {
					t.Errorf("reply %q, want %q", got, tc.wantReply)
				}
				if len(mods) != 0 {
					t.Errorf("rejected message got modifications %v", mods)
				}
				return
			}
			adds := headerAdds(mods)
			if adds["X-Spam-Flag"] != tc.wantFlag {
				t.Errorf("X-Spam-Flag %q, want %q", adds["X-Spam-Flag"], tc.wantFlag)
			}
			if !strings.HasPrefix(adds["X-Spam-Status"], tc.wantStat) {
				t.Errorf("X-Spam-Status %q, want prefix %q", adds["X-Spam-Status"], tc.wantStat)
			}
		})
	}
	if got := counter(t, h.srv.metrics.messages.WithLabelValues("reject")); got != 1 {
		t.Errorf("reject counter %v", got)
	}
	if got := counter(t, h.srv.metrics.errors.WithLabelValues("timeout")); got != 1 {
		t.Errorf("timeout counter %v", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Inbound X-Spam-* fields and Authentication-Results claiming our authserv-id
// are removed (highest index first) before ours are added.
func TestStripsInboundSpamHeaders(t *testing.T) {
	h := start(t, nil)
	s := h.session(t)
	m := baseMsg("SPAMMY\r\n")
	m.header = append(m.header, [2]string{"X-Spam-Flag", " NO"}, [2]string{"X-Spam-Status", " No, forged"}, [2]string{"x-spam-flag", " NO"},
		[2]string{"Authentication-Results", " mx.test; spf=pass smtp.mailfrom=forged"}, [2]string{"Authentication-Results", " other.example; dkim=pass"})
	mods, act := send(t, s, m)
	if act.Code != gomilter.ActAccept {
		t.Fatalf("action %c", act.Code)
	}
	var got []string
	for _, a := range mods {
		switch a.Code {
		case gomilter.ActChangeHeader:
			got = append(got, "del "+a.HeaderName+" "+itoa2(int(a.HeaderIndex))+" "+a.HeaderValue)
		case gomilter.ActAddHeader:
			got = append(got, "add "+a.HeaderName)
		}
	}
	want := []string{"del X-Spam-Flag 2 ", "del X-Spam-Flag 1 ", "del X-Spam-Status 1 ", "del Authentication-Results 1 ", "add X-Spam-Checker-Version", "add X-Spam-Flag", "add X-Spam-Score", "add X-Spam-Level", "add X-Spam-Status"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("edits\n got %q\nwant %q", got, want)
	}
}

func itoa2(n int) string { return strconv.Itoa(n) }

// Three messages on one connection are scored on their own and keep the
// connection's macros; message macros do not leak into the next message.
func TestThreeMessagesOneConnection(t *testing.T) {
	h := start(t, nil)
	s := h.session(t)
	bodies := []string{"first ham\r\n", "SPAMMY second\r\n", "GTUBE third\r\n"}
	want := []gomilter.ActionCode{gomilter.ActAccept, gomilter.ActAccept, gomilter.ActReplyCode}
	for i, b := range bodies {
		m := baseMsg(b)
		m.queueID = "Q" + itoa2(i)
		m.from = "s" + itoa2(i) + "@remote.test"
		_, act := send(t, s, m)
		if act.Code != want[i] {
			t.Errorf("message %d: action %c want %c", i, act.Code, want[i])
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reports) != 3 {
		t.Fatalf("%d reports", len(h.reports))
	}
	for i, r := range h.reports {
		if r.QueueID != "Q"+itoa2(i) || r.From != "s"+itoa2(i)+"@remote.test" {
			t.Errorf("report %d: queue %q from %q", i, r.QueueID, r.From)
		}
		if r.Macros["{client_addr}"] != "192.0.2.9" || r.Macros["j"] != "mx.test" || r.Macros["{tls_version}"] != "TLSv1.3" {
			t.Errorf("report %d: connection macros lost: %v", i, r.Macros)
		}
		if r.Client != "client.test[192.0.2.9]" || r.Helo != "helo.test" || !r.ClientIP.Equal(net.ParseIP("192.0.2.9")) {
			t.Errorf("report %d: client %q helo %q ip %v", i, r.Client, r.Helo, r.ClientIP)
		}
		if !strings.Contains(h.scorer.texts[i], bodies[i]) || strings.Contains(h.scorer.texts[i], bodies[(i+1)%3]) {
			t.Errorf("message %d scored with text %q", i, h.scorer.texts[i])
		}
	}
	if n := strings.Count(h.logs.String(), "msg=milter "); n != 3 {
		t.Errorf("%d log lines, want one per message:\n%s", n, h.logs)
	}
}

func TestAuthenticatedPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy    string
		body      string
		scored    bool
		wantCode  gomilter.ActionCode
		wantAdded bool
	}{
		{AuthSkip, "GTUBE\r\n", false, gomilter.ActAccept, false},
		{AuthScore, "SPAMMY\r\n", true, gomilter.ActAccept, true},
		{AuthOutbound, "SPAMMY\r\n", true, gomilter.ActAccept, false},
		{AuthOutbound, "GREY\r\n", true, gomilter.ActAccept, false},
		{AuthOutbound, "GTUBE\r\n", true, gomilter.ActReplyCode, false},
	} {
		t.Run(tc.policy+"/"+strings.TrimSpace(tc.body), func(t *testing.T) {
			h := start(t, func(c *Config) { c.Authenticated = tc.policy })
			s := h.session(t)
			m := baseMsg(tc.body)
			m.auth = "alice"
			mods, act := send(t, s, m)
			if act.Code != tc.wantCode {
				t.Errorf("action %c want %c", act.Code, tc.wantCode)
			}
			if got := len(headerAdds(mods)) > 0; got != tc.wantAdded {
				t.Errorf("headers added %v want %v (%v)", got, tc.wantAdded, mods)
			}
			if got := len(h.scorer.inputs) == 1; got != tc.scored {
				t.Errorf("scored %v want %v", got, tc.scored)
			}
			if tc.scored && h.scorer.inputs[0].AuthUser != "alice" {
				t.Errorf("AuthUser %q", h.scorer.inputs[0].AuthUser)
			}
		})
	}
}

func TestOversizeOnErrorAcceptQuarantineSubject(t *testing.T) {
	t.Run("oversize", func(t *testing.T) {
		h := start(t, func(c *Config) { c.MaxSize = 1000 })
		mods, act := send(t, h.session(t), baseMsg("GTUBE "+strings.Repeat("x", 2000)+"\r\n"))
		if act.Code != gomilter.ActAccept || !strings.Contains(headerAdds(mods)["X-Spam-Skipped"], "exceeds scan limit 1000") {
			t.Errorf("act %c mods %v", act.Code, mods)
		}
		if len(h.scorer.inputs) != 0 {
			t.Error("oversize message was scored")
		}
	})
	t.Run("on_error accept", func(t *testing.T) {
		h := start(t, func(c *Config) { c.OnError = OnErrorAccept })
		mods, act := send(t, h.session(t), baseMsg("FAIL\r\n"))
		if act.Code != gomilter.ActAccept || headerAdds(mods)["X-Spam-Skipped"] != "scan failed" {
			t.Errorf("act %c mods %v", act.Code, mods)
		}
	})
	t.Run("hold quarantine", func(t *testing.T) {
		h := start(t, func(c *Config) { c.HoldQuarantine = true })
		mods, act := send(t, h.session(t), baseMsg("GTUBE\r\n"))
		q := false
		for _, m := range mods {
			q = q || (m.Code == gomilter.ActQuarantine && strings.Contains(m.Reason, "1000.0"))
		}
		if act.Code != gomilter.ActAccept || !q || headerAdds(mods)["X-Spam-Flag"] != "YES" {
			t.Errorf("act %c mods %v", act.Code, mods)
		}
	})
	t.Run("rewrite subject", func(t *testing.T) {
		h := start(t, nil)
		mods, _ := send(t, h.session(t), baseMsg("SUBJECT\r\n"))
		ok := false
		for _, m := range mods {
			ok = ok || (m.Code == gomilter.ActChangeHeader && m.HeaderName == "Subject" && m.HeaderIndex == 1 && m.HeaderValue == " ***SPAM*** hello")
		}
		if !ok {
			t.Errorf("mods %v", mods)
		}
		mods, _ = send(t, h.session(t), baseMsg("SUBJUTF\r\n"))
		ok = false
		for _, m := range mods {
			if m.Code == gomilter.ActChangeHeader && m.HeaderName == "Subject" {
				dec, err := new(mime.WordDecoder).DecodeHeader(m.HeaderValue)
				ok = err == nil && dec == " ***SPAM*** こんにちは" && isASCII(m.HeaderValue)
			}
		}
		if !ok {
			t.Errorf("non-ASCII subject not RFC 2047 encoded: %v", mods)
		}
	})
}

// With SMFIP_HDR_LEADSPC header values arrive exactly as after the colon
// (continuation lines with bare LF); the scorer must see the message as it
// was sent, or c=simple DKIM signatures break.
func TestMessageReconstruction(t *testing.T) {
	h := start(t, nil)
	m := baseMsg("line1\r\nline2\r\n")
	m.header = [][2]string{{"Subject", " folded\n\tsubject"}, {"From", " a@b.test"}, {"X-Tight", "foo"}, {"X-Tab", "\thello"}, {"X-Two", "  two"}, {"X-Empty", ""}}
	s := h.session(t)
	if s.ProtocolOpts&gomilter.OptHeaderLeadingSpace == 0 {
		t.Fatalf("SMFIP_HDR_LEADSPC not negotiated: %#x", s.ProtocolOpts)
	}
	send(t, s, m)
	want := "Subject: folded\r\n\tsubject\r\nFrom: a@b.test\r\nX-Tight:foo\r\nX-Tab:\thello\r\nX-Two:  two\r\nX-Empty:\r\n\r\nline1\r\nline2\r\n"
	if got := h.scorer.texts[0]; got != want {
		t.Errorf("raw\n got %q\nwant %q", got, want)
	}
}

// Shutdown waits for a message in progress and then closes the connection.
func TestShutdownDrains(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ScanTimeout = config.Duration(time.Second)
	sc := &fakeScorer{}
	srv, err := New(cfg, sc, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	h := &harness{addr: ln.Addr().String()}
	s := h.session(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("serve after shutdown: %v", err)
	}
	if _, err := s.Mail("x@y.test", nil); err == nil {
		t.Error("connection still open after shutdown")
	}
}

// A connection whose message just ended is not idle yet: its verdict is
// written after the session drops the message state. Shutdown used to see
// the end of a scan longer than the idle window as an idle connection, close
// it before the reply went out, and Postfix applied milter_default_action
// to a message that had been scanned.
func TestMessageEndIsNotIdle(t *testing.T) {
	srv, err := New(DefaultConfig(), &fakeScorer{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &trackedConn{Conn: a, srv: srv}
	ss := srv.newSession(c)
	if _, err := ss.MailFrom("sender@remote.test", &gomilter.Modifier{}); err != nil {
		t.Fatal(err)
	}
	c.last.Store(time.Now().Add(-time.Second).UnixNano()) // a one-second scan
	ss.endMessage()
	if c.idle(50 * time.Millisecond) {
		t.Error("connection idle right after its message ended, before the reply was written")
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	c.OnError, c.Authenticated, c.ScanTimeout, c.RejectText = "bounce", "maybe", config.Duration(10*time.Minute), "a\nb"
	err := c.Validate()
	for _, f := range []string{"on_error", "authenticated", "scan_timeout", "reject_text"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("error %v lacks %s", err, f)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}
