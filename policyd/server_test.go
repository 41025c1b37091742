package policyd

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dovetail-mail/dovetail/store/mem"
)

func TestServerPersistentConnection(t *testing.T) {
	cfg := greyConfig()
	cfg.Greylist.ExemptNetworks = nil
	ts := startServer(t, cfg, Deps{})
	c := ts.dial(t)
	for i := 0; i < 3; i++ {
		if got := c.ask("recipient", fmt.Sprintf("u%d@example.com", i)); !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.7.1 Greylisted") {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	// Two requests written at once (pipelined) get two replies in order.
	c.send(encodeRequest("client_address", "127.0.0.1", "recipient", "postmaster@example.com") + encodeRequest("recipient", "x@example.com"))
	if got := c.reply(); got != "DUNNO" {
		t.Fatalf("pipelined 1: %q", got)
	}
	if got := c.reply(); !strings.HasPrefix(got, "DEFER_IF_PERMIT") {
		t.Fatalf("pipelined 2: %q", got)
	}
	// The server counts a request just after flushing its reply: poll briefly.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		n := counterValue(ts.m.requests.WithLabelValues(CheckGreylist, VerbDeferIfPermit))
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests metric = %v, want 4", n)
		}
	}
	logs := ts.logs.String()
	for _, want := range []string{"policy decision", "client=mail.sender.example[192.0.2.10]", "sender=news@sender.example", "check=greylist", "reason=\"greylist: new triplet\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// Bad input from the issue: each answers DEFER_IF_PERMIT or closes, never
// panics or stalls, and the server keeps serving others.
func TestServerBadInput(t *testing.T) {
	ts := startServer(t, testConfig(), Deps{})
	base := "request=smtpd_access_policy\nprotocol_state=RCPT\n"
	answered := []struct{ name, in string }{
		{"line without =", base + "this is not an attribute\n\n"},
		{"NUL byte", base + "sender=a\x00@b\n\n"},
		{"bad number", base + "size=lots\n\n"},
		{"no request attribute", "protocol_state=RCPT\nsender=a@b\n\n"},
	}
	for _, tc := range answered {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(t)
			c.send(tc.in)
			if got := c.reply(); got != "DEFER_IF_PERMIT 4.5.2 Malformed policy request" {
				t.Fatalf("got %q", got)
			}
			// The connection stays usable.
			if got := c.ask(); got != "DUNNO" {
				t.Fatalf("next request: %q", got)
			}
		})
	}
	closed := []struct{ name, in string }{
		{"10 MB line", base + "sender=" + strings.Repeat("x", 10<<20) + "\n\n"},
		{"10000 attributes", base + strings.Repeat("x_attr=1\n", 10000) + "\n"},
		{"garbage after the blank line", encodeRequest() + "GARBAGE WITHOUT NEWLINE"},
		{"stray blank lines", encodeRequest() + "\n\n\n"},
	}
	for _, tc := range closed {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(t)
			done := make(chan struct{})
			go func() {
				// The server may close before reading everything: ignore write errors.
				_, _ = c.nc.Write([]byte(tc.in))
				if tcp, ok := c.nc.(*net.TCPConn); ok {
					_ = tcp.CloseWrite()
				}
				close(done)
			}()
			if strings.HasPrefix(tc.in, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name") {
				if got := c.reply(); got != "DUNNO" {
					t.Fatalf("valid first request: %q", got)
				}
			}
			c.expectClosed()
			<-done
		})
	}
	t.Run("disconnect mid-request", func(t *testing.T) {
		c := ts.dial(t)
		c.send(base + "sender=a@")
		c.nc.Close()
		// The server keeps serving.
		if got := ts.dial(t).ask(); got != "DUNNO" {
			t.Fatalf("after a client vanished: %q", got)
		}
	})
	if n := counterValue(ts.m.protoErrors.WithLabelValues("answered")); n != 4 {
		t.Errorf("answered protocol errors = %v, want 4", n)
	}
	if !strings.Contains(ts.logs.String(), "line longer than 65536 bytes") || !strings.Contains(ts.logs.String(), "more than 100 attributes") {
		t.Errorf("log lacks clear messages:\n%s", ts.logs.String())
	}
}

func TestServerReadTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.ReadTimeout = configDuration(200 * time.Millisecond)
	ts := startServer(t, cfg, Deps{})
	c := ts.dial(t)
	c.send("request=smtpd_access_policy\n") // and then nothing
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stalled client held the connection for %s", d)
	}
}

// The deadlines are re-armed lazily (deadlines.read): after answered requests,
// whose idle deadline is minutes away, a stalled request must still be cut at
// the read timeout, and a silent connection at the idle timeout.
func TestServerTimeoutsAfterAnsweredRequests(t *testing.T) {
	cfg := testConfig()
	cfg.ReadTimeout = configDuration(200 * time.Millisecond)
	cfg.IdleTimeout = configDuration(10 * time.Minute)
	ts := startServer(t, cfg, Deps{})
	c := ts.dial(t)
	for range 3 {
		if got := c.ask(); got != "DUNNO" {
			t.Fatalf("got %q", got)
		}
	}
	c.send("request=smtpd_access_policy\n") // and then nothing
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stalled request after answered ones held the connection for %s (read timeout 200ms)", d)
	}

	cfg.IdleTimeout = configDuration(300 * time.Millisecond)
	ts = startServer(t, cfg, Deps{})
	c = ts.dial(t)
	for range 3 {
		c.ask()
	}
	start = time.Now()
	c.expectClosed()
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Fatalf("idle connection closed after %s, want about the idle timeout (300ms)", d)
	}
}

// The write deadline bounds writing the reply, so it starts when the reply is
// ready: checks that take longer than write_timeout (a slow store, DNS within
// request_timeout) still get their answer to Postfix, on the first request of
// a connection and on later ones.
func TestServerWriteTimeoutAfterSlowChecks(t *testing.T) {
	cfg := greyConfig()
	cfg.Greylist.ExemptNetworks = nil
	cfg.WriteTimeout = configDuration(100 * time.Millisecond)
	cfg.RequestTimeout = configDuration(5 * time.Second)
	ts := startServer(t, cfg, Deps{Store: &slowStore{Store: mem.New(), delay: 300 * time.Millisecond}})
	c := ts.dial(t)
	for i := range 2 {
		if got := c.ask("recipient", fmt.Sprintf("u%d@example.com", i)); !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.7.1 Greylisted") {
			t.Fatalf("request %d with checks slower than write_timeout: %q", i, got)
		}
	}
}

func TestDeadlineRearm(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		name    string
		cur     time.Time
		curT    time.Duration
		next    time.Time
		timeout time.Duration
		want    bool
	}{
		{"never set", time.Time{}, 0, t0, time.Minute, true},
		{"later by less than the slack (a second at most)", t0, time.Minute, t0.Add(999 * time.Millisecond), time.Minute, false},
		{"later by the slack", t0, 10 * time.Minute, t0.Add(time.Second), 10 * time.Minute, true},
		{"slack is a sixteenth of short timeouts", t0, 160 * time.Millisecond, t0.Add(9 * time.Millisecond), 160 * time.Millisecond, false},
		{"slack is a sixteenth of short timeouts, reached", t0, 160 * time.Millisecond, t0.Add(10 * time.Millisecond), 160 * time.Millisecond, true},
		{"sooner is always set", t0, 10 * time.Minute, t0.Add(-time.Millisecond), 10 * time.Minute, true},
		{"another timeout is always set", t0, 10 * time.Minute, t0.Add(time.Millisecond), 30 * time.Second, true},
	} {
		if got := rearm(tc.cur, tc.next, tc.timeout, tc.curT); got != tc.want {
			t.Errorf("%s: rearm = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestServerShutdownWaitsForInFlight(t *testing.T) {
	st := &slowStore{Store: mem.New(), delay: 300 * time.Millisecond}
	cfg := greyConfig()
	cfg.Greylist.ExemptNetworks = nil
	s, err := New(cfg, Deps{Store: st, Log: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	busy, _ := net.Dial("tcp", ln.Addr().String())
	idle, _ := net.Dial("tcp", ln.Addr().String())
	defer busy.Close()
	defer idle.Close()
	cl := &client{t: t, nc: busy, br: newBufReader(busy)}
	cl.send(encodeRequest())
	time.Sleep(50 * time.Millisecond) // the request is in the slow store now
	var wg sync.WaitGroup
	wg.Add(1)
	var shutErr error
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutErr = s.Shutdown(ctx)
	}()
	if got := cl.reply(); !strings.HasPrefix(got, "DEFER_IF_PERMIT") {
		t.Fatalf("in-flight request: %q", got)
	}
	wg.Wait()
	if shutErr != nil {
		t.Fatalf("Shutdown: %v", shutErr)
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	(&client{t: t, nc: idle, br: newBufReader(idle)}).expectClosed()
}

func TestServerReloadKeepsServing(t *testing.T) {
	cfg := testConfig()
	ts := startServer(t, cfg, Deps{})
	c := ts.dial(t)
	if got := c.ask(); got != "DUNNO" {
		t.Fatal(got)
	}
	cfg.Access.Enabled = true
	cfg.Access.DenyNetworks = []string{"192.0.2.0/24"}
	if err := ts.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := c.ask(); got != "REJECT 5.7.1 Access denied" {
		t.Fatalf("same connection after reload: %q", got)
	}
	bad := cfg
	bad.StoreFailure = "sometimes"
	if err := ts.Reload(bad); err == nil {
		t.Fatal("invalid reload accepted")
	}
	if got := c.ask(); got != "REJECT 5.7.1 Access denied" {
		t.Fatalf("after failed reload: %q", got)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
