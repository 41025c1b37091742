package policyd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// clock is a settable time source for greylisting and windows.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testConfig is the default with every optional check off, so each test turns
// on what it exercises.
func testConfig() Config {
	c := DefaultConfig()
	c.Greylist.Enabled = false
	c.RateLimit.Enabled = false
	c.Hostname = "mx.test"
	return c
}

// fakeDir is an in-memory directory.Lookup.
type fakeDir struct {
	users map[string]*directory.User // by login
	err   error                      // returned by every call when set
}

func (f *fakeDir) LookupLogin(_ context.Context, login string) (*directory.User, error) {
	if f.err != nil {
		return nil, f.err
	}
	if u, ok := f.users[strings.ToLower(login)]; ok {
		return u, nil
	}
	return nil, fmt.Errorf("fake: %s: %w", login, directory.ErrNotFound)
}

func (f *fakeDir) LookupAddress(_ context.Context, addr string) (*directory.User, error) {
	if f.err != nil {
		return nil, f.err
	}
	for _, u := range f.users {
		for _, a := range u.Addresses {
			if strings.EqualFold(a, addr) {
				return u, nil
			}
		}
	}
	return nil, fmt.Errorf("fake: %s: %w", addr, directory.ErrNotFound)
}

func testDir() *fakeDir {
	return &fakeDir{users: map[string]*directory.User{
		"alice": {Login: "alice", Addresses: []string{"alice@example.com", "postmaster@example.com"}, Enabled: true},
		"bob":   {Login: "bob", Addresses: []string{"bob@example.com"}, Enabled: false},
		"carol": {Login: "carol", Addresses: []string{"team+support@example.com", "sales+eu@example.com"}, Enabled: true},
		"dave":  {Login: "dave", Addresses: []string{"team@example.com"}, Enabled: true},
	}}
}

// testServer starts a Server on a loopback port.
type testServer struct {
	*Server
	addr string
	reg  *prometheus.Registry
	logs *testenv.LogBuffer
}

func startServer(t *testing.T, cfg Config, deps Deps) *testServer {
	t.Helper()
	ts := &testServer{reg: prometheus.NewRegistry(), logs: &testenv.LogBuffer{}}
	if deps.Store == nil {
		deps.Store = mem.New()
	}
	deps.Registerer = ts.reg
	deps.Log = slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.Server, ts.addr = s, ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", ts.logs.String())
		}
	})
	return ts
}

// client is one persistent policy connection.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t *testing.T) *client {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// ask sends a request built from attrs (name=value pairs) and returns the action.
func (c *client) ask(attrs ...string) string {
	c.t.Helper()
	c.send(encodeRequest(attrs...))
	return c.reply()
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, raw); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// reply reads "action=...\n\n" and returns what follows "action=".
func (c *client) reply() string {
	c.t.Helper()
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	blank, err := c.br.ReadString('\n')
	if err != nil || blank != "\n" || !strings.HasPrefix(line, "action=") {
		c.t.Fatalf("bad reply %q %q %v", line, blank, err)
	}
	return strings.TrimSuffix(strings.TrimPrefix(line, "action="), "\n")
}

// expectClosed asserts the server closed the connection without a reply.
func (c *client) expectClosed() {
	c.t.Helper()
	b, err := c.br.ReadByte()
	if err == nil {
		rest, _ := c.br.ReadString('\n')
		c.t.Fatalf("expected the connection to close, got %q", string(b)+rest)
	}
}

// encodeRequest builds a request with defaults a test may override.
func encodeRequest(attrs ...string) string {
	kv := map[string]string{
		"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
		"client_address": "192.0.2.10", "client_name": "mail.sender.example", "helo_name": "mail.sender.example",
		"sender": "news@sender.example", "recipient": "user@example.com", "instance": "1.2.3.4",
	}
	order := []string{"request", "protocol_state", "protocol_name", "client_address", "client_name", "helo_name", "sender", "recipient", "instance"}
	for i := 0; i+1 < len(attrs); i += 2 {
		if _, ok := kv[attrs[i]]; !ok {
			order = append(order, attrs[i])
		}
		kv[attrs[i]] = attrs[i+1]
	}
	var b strings.Builder
	for _, k := range order {
		b.WriteString(k + "=" + kv[k] + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

// evalDirect runs the engine on one request without a socket.
func evalDirect(t *testing.T, s *Server, cs *connState, attrs ...string) decision {
	t.Helper()
	rd := NewReader(strings.NewReader(encodeRequest(attrs...)), 0, 0)
	var r Request
	if err := rd.Read(&r); err != nil {
		t.Fatal(err)
	}
	if cs == nil {
		cs = &connState{}
	}
	tx := txn{req: &r, conn: cs, now: s.checkTime(time.Now())}
	return s.eng.Load().decide(context.Background(), &tx)
}

func newDirect(t *testing.T, cfg Config, deps Deps) *Server {
	t.Helper()
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func createFile(path string) (*os.File, error) { return os.Create(path) }

func configDuration(d time.Duration) config.Duration { return config.Duration(d) }

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newBufReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

// slowStore delays every Get, to hold a request in flight.
type slowStore struct {
	store.Store
	delay time.Duration
}

func (s *slowStore) Get(ctx context.Context, key string) ([]byte, error) {
	time.Sleep(s.delay)
	return s.Store.Get(ctx, key)
}

func dirUser(login string, addrs ...string) *directory.User {
	return &directory.User{Login: login, Addresses: addrs, Enabled: true}
}
