package milter

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// gtube is SpamAssassin's Generic Test for Unsolicited Bulk Email.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// lmtpSink is a tiny LMTP server that keeps every delivered message.
type lmtpSink struct {
	mu   sync.Mutex
	msgs []string
	srv  *smtp.Server
	addr string
}

func startSink(t *testing.T) *lmtpSink {
	t.Helper()
	s := &lmtpSink{}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }))
	s.srv.LMTP = true
	s.srv.Domain = "sink.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// wait returns the first delivered message containing marker.
func (s *lmtpSink) wait(t *testing.T, marker string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, m := range s.msgs {
			if strings.Contains(m, marker) {
				s.mu.Unlock()
				return m
			}
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no message with %q delivered", marker)
	return ""
}

type sinkSession struct{ sink *lmtpSink }

func (s *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, string(b))
	s.sink.mu.Unlock()
	return nil
}
func (s *sinkSession) Reset()        {}
func (s *sinkSession) Logout() error { return nil }

// startAuthStub serves the Dovecot auth protocol (the part Postfix uses) and
// accepts PLAIN alice/secret. Minimal on purpose: the real one is authd.
func startAuthStub(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				fmt.Fprintf(c, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t%d\nCUID\t1\nCOOKIE\t0123456789abcdef0123456789abcdef\nDONE\n", os.Getpid())
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					f := strings.Split(sc.Text(), "\t")
					if f[0] != "AUTH" || len(f) < 3 {
						continue
					}
					id, user := f[1], ""
					for _, p := range f[3:] {
						if v, ok := strings.CutPrefix(p, "resp="); ok {
							raw, _ := base64.StdEncoding.DecodeString(v)
							parts := strings.Split(string(raw), "\x00")
							if len(parts) == 3 && parts[2] == "secret" {
								user = parts[1]
							}
						}
					}
					if user == "" {
						fmt.Fprintf(c, "FAIL\t%s\n", id)
						continue
					}
					fmt.Fprintf(c, "OK\t%s\tuser=%s\n", id, user)
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

type postfixRig struct {
	pf      *testenv.PostfixServer
	sink    *lmtpSink
	mu      sync.Mutex
	reports []Report
}

func (r *postfixRig) report(t *testing.T, pred func(Report) bool) Report {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, rep := range r.reports {
			if pred(rep) {
				r.mu.Unlock()
				return rep
			}
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no matching milter report")
	return Report{}
}

func startPostfixRig(t *testing.T, mod ...func(*Config)) *postfixRig {
	t.Helper()
	testenv.Need(t, testenv.PostfixMaster, "swaks")
	rig := &postfixRig{sink: startSink(t)}
	auth := startAuthStub(t)

	cfg := DefaultConfig()
	cfg.Authenticated = AuthScore
	for _, m := range mod {
		m(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, integrationScorer(t), slog.New(slog.NewTextHandler(testWriter{t}, nil)), prometheus.NewRegistry(), Options{
		OnMessage: func(r Report) {
			rig.mu.Lock()
			rig.reports = append(rig.reports, r)
			rig.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("milter shutdown: %v", err)
		}
		t.Logf("milter shutdown took %v", time.Since(start))
	})
	rig.pf = testenv.StartPostfix(t, testenv.PostfixOptions{
		Milter:   "inet:" + ln.Addr().String(),
		SASLPath: "inet:" + auth,
		LMTP:     "inet:" + rig.sink.addr,
	})
	return rig
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// headerValue returns the first name field of msg, unfolded (the fields we
// add are folded).
func headerValue(msg, name string) string {
	lines := strings.Split(strings.SplitN(msg, "\r\n\r\n", 2)[0], "\r\n")
	for i, line := range lines {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			for _, cont := range lines[i+1:] {
				if cont == "" || cont[0] != ' ' && cont[0] != '\t' {
					break
				}
				v += cont
			}
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestPostfix(t *testing.T) {
	rig := startPostfixRig(t)
	addr := rig.pf.SMTPAddr

	t.Run("GTUBE rejected 550 5.7.1", func(t *testing.T) {
		out, code := testenv.Swaks(t, addr, "--from", "bad@remote.test", "--to", "alice@example.com",
			"--header", "Subject: gtube", "--body", "test "+gtube)
		if code == 0 || !strings.Contains(out, "550 5.7.1 Message rejected as spam") {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
	})

	t.Run("spammy gets X-Spam-Flag YES", func(t *testing.T) {
		marker := "marker-spammy-1"
		out, code := testenv.Swaks(t, addr, "--from", "promo@remote.test", "--to", "alice@example.com",
			"--header", "Subject: "+marker, "--header", "X-Spam-Flag: NO", "--header", "X-Spam-Status: No, forged",
			"--body", spammyBody)
		if code != 0 {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		msg := rig.sink.wait(t, marker)
		if got := headerValue(msg, "X-Spam-Flag"); got != "YES" {
			t.Errorf("X-Spam-Flag %q in\n%s", got, msg)
		}
		if st := headerValue(msg, "X-Spam-Status"); !strings.HasPrefix(st, "Yes, score=") || !strings.Contains(msg, "required=") {
			t.Errorf("X-Spam-Status %q in\n%s", st, msg)
		}
		if strings.Contains(msg, "forged") || strings.Count(msg, "X-Spam-Flag") != 1 {
			t.Errorf("inbound X-Spam-* not removed:\n%s", msg)
		}
	})

	t.Run("clean gets X-Spam-Status No", func(t *testing.T) {
		marker := "marker-clean-1"
		out, code := testenv.Swaks(t, addr, "--from", "friend@remote.test", "--to", "alice@example.com",
			"--header", "Subject: "+marker, "--body", "Hi Alice,\nsee you at lunch tomorrow.\nBob\n")
		if code != 0 {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		msg := rig.sink.wait(t, marker)
		if st := headerValue(msg, "X-Spam-Status"); !strings.HasPrefix(st, "No, score=") {
			t.Errorf("X-Spam-Status %q in\n%s", st, msg)
		}
		if headerValue(msg, "X-Spam-Flag") != "" {
			t.Errorf("ham flagged:\n%s", msg)
		}
	})

	t.Run("auth and client macros at end of message", func(t *testing.T) {
		marker := "marker-auth-1"
		out, code := testenv.Swaks(t, addr, "--from", "alice@example.com", "--to", "alice@example.com",
			"--auth", "PLAIN", "--auth-user", "alice@example.com", "--auth-password", "secret",
			"--header", "Subject: "+marker, "--body", "authenticated hello\n")
		if code != 0 {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		rep := rig.report(t, func(r Report) bool { return r.From == "alice@example.com" })
		if rep.Macros["{auth_authen}"] != "alice@example.com" || rep.AuthUser != "alice@example.com" {
			t.Errorf("{auth_authen} at EOM = %q (AuthUser %q); macros %v", rep.Macros["{auth_authen}"], rep.AuthUser, rep.Macros)
		}
		if rep.Macros["{client_addr}"] != "127.0.0.1" || !rep.ClientIP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("{client_addr} at EOM = %q, ClientIP %v; macros %v", rep.Macros["{client_addr}"], rep.ClientIP, rep.Macros)
		}
		if rep.QueueID == "" || rep.Macros["j"] != "mail.example.test" {
			t.Errorf("queue id %q, j %q", rep.QueueID, rep.Macros["j"])
		}
		rig.sink.wait(t, marker)
	})

	t.Run("Authentication-Results", func(t *testing.T) {
		for _, tc := range []struct{ domain, want string }{
			{"auth.example", "mail.example.test; spf=pass smtp.mailfrom=news@auth.example; dkim=none; dmarc=pass header.from=auth.example"},
			{"forged.example", "mail.example.test; spf=fail smtp.mailfrom=news@forged.example; dkim=none; dmarc=fail header.from=forged.example"},
		} {
			marker := "marker-ar-" + tc.domain
			out, code := testenv.Swaks(t, addr, "--from", "news@"+tc.domain, "--to", "alice@example.com",
				"--header", "From: news@"+tc.domain, "--header", "Subject: "+marker,
				"--header", "Authentication-Results: mail.example.test; spf=pass (forged)", "--body", "news\n")
			if code != 0 {
				t.Fatalf("swaks exit %d:\n%s", code, out)
			}
			msg := rig.sink.wait(t, marker)
			if got := headerValue(msg, "Authentication-Results"); got != tc.want {
				t.Errorf("Authentication-Results %q, want %q", got, tc.want)
			}
			if strings.Contains(msg, "(forged)") {
				t.Errorf("forged Authentication-Results kept:\n%s", msg)
			}
		}
	})

	// The envelope sender reaches Authentication-Results: a quoted local
	// part must not be able to add a result (a dkim=pass for another domain).
	t.Run("quoted MAIL FROM adds no result", func(t *testing.T) {
		marker := "marker-ar-quoted"
		out, code := testenv.Swaks(t, addr, "--from", `"x\"; dkim=pass header.d=bank.example"@auth.example`, "--to", "alice@example.com",
			"--header", "From: news@auth.example", "--header", "Subject: "+marker, "--body", "news\n")
		if code != 0 {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		msg := rig.sink.wait(t, marker)
		want := "mail.example.test; spf=pass smtp.mailfrom=auth.example; dkim=none; dmarc=pass header.from=auth.example"
		if got := headerValue(msg, "Authentication-Results"); got != want {
			t.Errorf("Authentication-Results %q, want %q", got, want)
		}
	})

	t.Run("three messages on one connection", func(t *testing.T) {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("multi.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(sasl.NewPlainClient("", "bob@example.com", "secret")); err != nil {
			t.Fatal(err)
		}
		bodies := []string{"Subject: multi-1\r\n\r\nplain note one\r\n", "Subject: multi-2\r\n\r\n" + spammyBody, "Subject: multi-3\r\n\r\n" + gtube + "\r\n"}
		var errs []error
		for i, b := range bodies {
			errs = append(errs, sendOne(c, fmt.Sprintf("m%d@remote.test", i+1), b))
		}
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("messages 1,2: %v %v", errs[0], errs[1])
		}
		var se *smtp.SMTPError
		if !errors.As(errs[2], &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
			t.Fatalf("message 3: %v, want 550 5.7.1", errs[2])
		}
		c.Quit()
		m1, m2 := rig.sink.wait(t, "multi-1"), rig.sink.wait(t, "multi-2")
		if !strings.HasPrefix(headerValue(m1, "X-Spam-Status"), "No,") || headerValue(m2, "X-Spam-Flag") != "YES" {
			t.Errorf("per-message verdicts mixed up:\n%s\n----\n%s", m1, m2)
		}
		var ids = map[string]bool{}
		for i := 1; i <= 3; i++ {
			rep := rig.report(t, func(r Report) bool { return r.From == fmt.Sprintf("m%d@remote.test", i) })
			ids[rep.QueueID] = true
			if rep.Macros["{auth_authen}"] != "bob@example.com" || rep.Macros["{client_addr}"] != "127.0.0.1" || rep.Helo != "multi.test" {
				t.Errorf("message %d lost connection state: helo %q macros %v", i, rep.Helo, rep.Macros)
			}
		}
		if len(ids) != 3 {
			t.Errorf("queue ids %v, want 3 distinct", ids)
		}
	})
}

func sendOne(c *smtp.Client, from, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt("alice@example.com", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}

// With hold_quarantine, GTUBE is accepted and Postfix puts it on hold (not
// delivered), with the queue id in the milter's log line.
func TestPostfixHoldQuarantine(t *testing.T) {
	rig := startPostfixRig(t, func(c *Config) { c.HoldQuarantine = true })
	out, code := testenv.Swaks(t, rig.pf.SMTPAddr, "--from", "bad@remote.test", "--to", "alice@example.com",
		"--header", "Subject: hold-me", "--body", "test "+gtube)
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	rep := rig.report(t, func(r Report) bool { return r.From == "bad@remote.test" })
	if rep.Action != "quarantine" {
		t.Fatalf("action %q", rep.Action)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, f := range rig.pf.QueueFiles(t) {
			if f == "hold/"+rep.QueueID {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s not on hold; queue files %v", rep.QueueID, rig.pf.QueueFiles(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
