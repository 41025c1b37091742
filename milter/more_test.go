package milter

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"
)

// An aborted message (RSET, or a client gone mid-DATA) leaves nothing behind:
// the next message is scored alone and message macros are gone.
func TestAbortResetsMessage(t *testing.T) {
	h := start(t, nil)
	s := h.session(t)
	mustContinue(t, s.Macros(gomilter.CodeMail, "{mail_addr}", "first@x.test", "i", "QA"))
	act, err := s.Mail("first@x.test", nil)
	checkContinue(t, act, err)
	act, err = s.HeaderField("Subject", "GTUBE")
	checkContinue(t, act, err)
	act, err = s.BodyChunk([]byte("GTUBE part one\r\n"))
	checkContinue(t, act, err)
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
	m := baseMsg("clean second\r\n")
	m.queueID = ""
	_, act = send(t, s, m)
	if act.Code != gomilter.ActAccept {
		t.Fatalf("second message: %c", act.Code)
	}
	if txt := h.scorer.texts[0]; strings.Contains(txt, "GTUBE") {
		t.Errorf("aborted message leaked into the next: %q", txt)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.reports[0]; r.Macros["{mail_addr}"] != "sender@remote.test" || r.QueueID != "" {
		t.Errorf("message macros of the aborted message survived: %v", r.Macros)
	}
}

// Connections from IPv6 and unix-socket clients, and without CONNECT info.
func TestClientFamilies(t *testing.T) {
	h := start(t, func(c *Config) { c.RequestMacros = false })
	for _, tc := range []struct {
		fam  gomilter.ProtoFamily
		addr string
		want string
	}{
		{gomilter.FamilyInet6, "2001:db8::7", "client.test[2001:db8::7]"},
		{gomilter.FamilyUnix, "/run/x.sock", "client.test[]"},
		{gomilter.FamilyUnknown, "", "client.test[]"},
	} {
		c := gomilter.NewClientWithOptions("tcp", h.addr, gomilter.ClientOptions{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader})
		s, err := c.Session()
		if err != nil {
			t.Fatal(err)
		}
		act, err := s.Conn("client.test", tc.fam, 25, tc.addr)
		checkContinue(t, act, err)
		_, act = send(t, s, baseMsg("hi\r\n"))
		if act.Code != gomilter.ActAccept {
			t.Errorf("%v: %c", tc.fam, act.Code)
		}
		s.Close()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, r := range h.reports {
		if i < 3 && r.Client != []string{"client.test[2001:db8::7]", "client.test[]", "client.test[]"}[i] {
			t.Errorf("report %d client %q", i, r.Client)
		}
	}
}

// memListener serves net.Pipe connections, for the fuzz target.
type memListener struct {
	ch   chan net.Conn
	done chan struct{}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *memListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}
func (l *memListener) Addr() net.Addr { return &net.UnixAddr{Name: "mem", Net: "unix"} }
func (l *memListener) Dial(network, addr string) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case l.ch <- a:
		return b, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// FuzzMessage sends arbitrary header fields and body bytes through the milter
// protocol: the milter must answer every message (accept or a reply code),
// never hang or crash, and keep what it scans within max_size.
func FuzzMessage(f *testing.F) {
	f.Add("Subject: hi\nFrom: a@b", []byte("body\r\n"))
	f.Add("X-Spam-Flag: YES\nx-spam-flag: NO\nAuthentication-Results: mx.test; spf=pass", []byte("SPAMMY\r\n"))
	f.Add("Subject: =?utf-8?b?w6k=?=\n: empty name\nNoColon", []byte("\x00\xff\r\n.\r\n"))
	f.Add(strings.Repeat("H: v\n", 50), []byte(strings.Repeat("x", 3000)))
	cfg := DefaultConfig()
	cfg.MaxSize = 2048
	srv, err := New(cfg, &fakeScorer{}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	ln := &memListener{ch: make(chan net.Conn), done: make(chan struct{})}
	go srv.Serve(ln)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	client := gomilter.NewClientWithOptions("mem", "mem", gomilter.ClientOptions{
		Dialer: ln, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		s, err := client.Session()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if act, err := s.Conn("c", gomilter.FamilyInet, 1, "192.0.2.1"); err != nil || act.Code != gomilter.ActContinue {
			t.Fatalf("conn: %v %v", act, err)
		}
		if act, err := s.Mail("a@b", nil); err != nil || act.Code != gomilter.ActContinue {
			t.Fatalf("mail: %v %v", act, err)
		}
		var h textproto.Header
		for _, line := range strings.Split(header, "\n") {
			k, v, _ := strings.Cut(line, ":")
			if k == "" || strings.ContainsAny(k, "\x00") || strings.Contains(v, "\x00") {
				continue // the protocol's C strings cannot carry NUL
			}
			h.Add(k, v)
		}
		if act, err := s.Header(h); err != nil || act.Code != gomilter.ActContinue {
			t.Fatalf("header: %v %v", act, err)
		}
		for len(body) > 0 {
			n := min(len(body), gomilter.MaxBodyChunk)
			if act, err := s.BodyChunk(body[:n]); err != nil || act.Code != gomilter.ActContinue {
				t.Fatalf("body: %v %v", act, err)
			}
			body = body[n:]
		}
		_, act, err := s.End()
		if err != nil {
			t.Fatal(err)
		}
		if act.Code != gomilter.ActAccept && act.Code != gomilter.ActReplyCode {
			t.Fatalf("end: %c", act.Code)
		}
	})
}

func TestReload(t *testing.T) {
	h := start(t, nil)
	cfg := DefaultConfig()
	cfg.Listen.Address = "127.0.0.1:0"
	cfg.ScanTimeout = h.srv.config().ScanTimeout
	cfg.RejectText = "Go away"
	if err := h.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	_, act := send(t, h.session(t), baseMsg("GTUBE\r\n"))
	if act.Code != gomilter.ActReplyCode || act.SMTPText != "5.7.1 Go away" {
		t.Errorf("after reload: %c %q", act.Code, act.SMTPText)
	}
	cfg.Listen.Address = "127.0.0.1:1"
	if err := h.srv.Reload(cfg); !errors.Is(err, ErrRestartNeeded) {
		t.Errorf("listen change: %v", err)
	}
	cfg.OnError = "bogus"
	if err := h.srv.Reload(cfg); err == nil || errors.Is(err, ErrRestartNeeded) {
		t.Errorf("invalid config accepted: %v", err)
	}
}

// Outbound mail from our own users carries no spam headers to the world, also
// when it was not scanned (too big, or the scan failed under on_error: accept).
func TestOutboundSkippedCarriesNoHeaders(t *testing.T) {
	for name, body := range map[string]string{"oversize": "GTUBE " + strings.Repeat("x", 2000) + "\r\n", "scan failed": "FAIL\r\n"} {
		t.Run(name, func(t *testing.T) {
			h := start(t, func(c *Config) {
				c.Authenticated, c.OnError, c.MaxSize = AuthOutbound, OnErrorAccept, 1000
			})
			m := baseMsg(body)
			m.auth = "alice"
			m.header = append(m.header, [2]string{"X-Spam-Flag", " NO"})
			mods, act := send(t, h.session(t), m)
			if act.Code != gomilter.ActAccept || len(mods) != 0 {
				t.Errorf("act %c, edits %v", act.Code, mods)
			}
		})
	}
}
