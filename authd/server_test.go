package authd

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/directory/password"
	"github.com/dovetail-mail/dovetail/directory/static"
	"github.com/dovetail-mail/dovetail/internal/config"
)

const usersFile = `alice@example.com:{PLAIN}alicepw
bob@example.com:{PLAIN}bobpw::::::status=invalid
carol:{SSHA}dOiHfu7KYmek5e+ZkHo+1Qu5XFCkSNss
cram:{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56
nopw:{PLAIN}::::::
scram:{SCRAM-SHA-256}4096,GDeAH+ot0LjaUFaaS4IOTA==,V++l1TFsOPM1a8D7wvaE81adXZWNRlPFpHIFPXHWrvk=,2930cluItwJVpfZboBweNXRu/YJJswpuvvFGPkL8IVo=
`

// fakeDir wraps a static directory: it counts directory calls and can pretend
// to be unavailable.
type fakeDir struct {
	*static.Directory
	down  atomic.Bool
	calls atomic.Int64
}

func (f *fakeDir) Authenticate(ctx context.Context, login, pw string) (*directory.User, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return nil, fmt.Errorf("fake: %w", directory.ErrUnavailable)
	}
	return f.Directory.Authenticate(ctx, login, pw)
}

func (f *fakeDir) StoredPassword(ctx context.Context, login string) (string, string, *directory.User, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return "", "", nil, fmt.Errorf("fake: %w", directory.ErrUnavailable)
	}
	return f.Directory.StoredPassword(ctx, login)
}

// bindOnly hides SecretReader, like LDAP auth-bind mode.
type bindOnly struct{ directory.Directory }

func newFakeDir(t *testing.T) *fakeDir { return newFakeDirTB(t) }

func newFakeDirTB(t testing.TB) *fakeDir {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(usersFile), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := static.DefaultConfig()
	cfg.Path = p
	d, err := static.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeDir{Directory: d}
}

// usersFileDir serves users from a users file, read again whenever it changes
// (check_interval 0); path is the file's.
func usersFileDir(t *testing.T, users string) (d *static.Directory, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := static.DefaultConfig()
	cfg.Path, cfg.CheckInterval = path, 0
	d, err := static.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, path
}

func testConfig() Config {
	c := DefaultConfig()
	c.Mechanisms = []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"}
	c.FailureDelay = 0
	c.FailureDelayMax = 0
	return c
}

type testServer struct {
	s    *Server
	addr string
	reg  *prometheus.Registry
}

func start(t *testing.T, cfg Config, dir directory.Directory) *testServer {
	return startTB(t, cfg, dir)
}

func startTB(t testing.TB, cfg Config, dir directory.Directory) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, dir, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{s: s, addr: ln.Addr().String(), reg: reg}
}

// client speaks the protocol like Postfix's xsasl_dovecot.
type client struct {
	t    testing.TB
	c    net.Conn
	r    *bufio.Reader
	mech []string
	hs   []string
	id   int
}

func dial(t *testing.T, addr string) *client { return dialTB(t, addr) }

func dialTB(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, c: nc, r: bufio.NewReader(nc)}
	c.send("VERSION\t1\t0\nCPID\t4242\n")
	for {
		l := c.line()
		c.hs = append(c.hs, l)
		if l == "DONE" {
			break
		}
		if strings.HasPrefix(l, "MECH\t") {
			c.mech = append(c.mech, strings.Split(l, "\t")[1])
		}
	}
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\n")
}

// closed reports whether the server closed the connection (without data).
func (c *client) closed() bool {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.r.ReadString('\n')
	if err == nil {
		c.t.Errorf("expected close, got %q", l)
		return false
	}
	return true
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (c *client) auth(mech, extra string) int {
	c.id++
	c.send(fmt.Sprintf("AUTH\t%d\t%s\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7%s\n", c.id, mech, extra))
	return c.id
}

func (c *client) plain(user, pw string) string {
	id := c.auth("PLAIN", "\tresp="+b64("\x00"+user+"\x00"+pw))
	l := c.line()
	if !strings.HasPrefix(l, fmt.Sprintf("OK\t%d\t", id)) && !strings.HasPrefix(l, fmt.Sprintf("FAIL\t%d", id)) {
		c.t.Fatalf("reply %q for id %d", l, id)
	}
	return l
}

func TestHandshake(t *testing.T) {
	ts := start(t, testConfig(), newFakeDir(t))
	c := dial(t, ts.addr)
	if c.hs[0] != "VERSION\t1\t2" {
		t.Errorf("first line %q", c.hs[0])
	}
	spid := -1
	for i, l := range c.hs {
		if strings.HasPrefix(l, "SPID\t") {
			spid = i
		}
		if strings.HasPrefix(l, "MECH\t") && spid >= 0 {
			t.Errorf("MECH after SPID: %v", c.hs)
		}
	}
	if want := "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"; strings.Join(c.mech, " ") != want {
		t.Errorf("mechs %v", c.mech)
	}
	if c.hs[3] != "MECH\tCRAM-MD5\tdictionary\tactive" {
		t.Errorf("CRAM flags: %q", c.hs[3])
	}
	// Auth-bind directories cannot serve CRAM-MD5/SCRAM: not advertised.
	ts2 := start(t, testConfig(), bindOnly{newFakeDir(t)})
	if c2 := dial(t, ts2.addr); strings.Join(c2.mech, " ") != "PLAIN LOGIN" {
		t.Errorf("bind-only mechs %v", c2.mech)
	}
}

func TestPlainAndLogin(t *testing.T) {
	dir := newFakeDir(t)
	ts := start(t, testConfig(), dir)
	c := dial(t, ts.addr)
	for _, tc := range []struct{ user, pw, want string }{
		{"alice@example.com", "alicepw", "OK\t1\tuser=alice@example.com"},
		{"alice@example.com", "wrong", "FAIL\t2\tuser=alice@example.com"},
		{"bob@example.com", "bobpw", "FAIL\t3\tuser=bob@example.com"}, // disabled
		{"nobody", "x", "FAIL\t4\tuser=nobody"},
		{"carol", "secret", "OK\t5\tuser=carol"},
		{"cram", "secret", "OK\t6\tuser=cram"},   // {CRAM-MD5} also verifies plaintext
		{"scram", "secret", "OK\t7\tuser=scram"}, // so does {SCRAM-SHA-256}
		{"a\tb", "x", "FAIL\t8\tuser=a\x01tb"},   // tab-escaped
	} {
		if got := c.plain(tc.user, tc.pw); got != tc.want {
			t.Errorf("PLAIN %s/%s = %q, want %q", tc.user, tc.pw, got, tc.want)
		}
	}
	// PLAIN without initial response: empty challenge first.
	id := c.auth("PLAIN", "")
	if l := c.line(); l != fmt.Sprintf("CONT\t%d\t", id) {
		t.Fatalf("got %q", l)
	}
	c.send(fmt.Sprintf("CONT\t%d\t%s\n", id, b64("\x00alice@example.com\x00alicepw")))
	if l := c.line(); l != fmt.Sprintf("OK\t%d\tuser=alice@example.com", id) {
		t.Fatalf("got %q", l)
	}
	// authzid different from authcid is refused.
	id = c.auth("PLAIN", "\tresp="+b64("admin\x00alice@example.com\x00alicepw"))
	if l := c.line(); !strings.HasPrefix(l, fmt.Sprintf("FAIL\t%d\tuser=alice@example.com\tcode=authz_fail", id)) {
		t.Errorf("authz: %q", l)
	}
	// Malformed PLAIN and "resp==" (empty initial response) fail cleanly.
	id = c.auth("PLAIN", "\tresp="+b64("onlyone"))
	if l := c.line(); l != fmt.Sprintf("FAIL\t%d", id) {
		t.Errorf("malformed: %q", l)
	}
	id = c.auth("PLAIN", "\tresp==")
	if l := c.line(); l != fmt.Sprintf("FAIL\t%d", id) {
		t.Errorf("resp==: %q", l)
	}

	// LOGIN, with and without the user name as initial response.
	id = c.auth("LOGIN", "")
	for _, step := range []struct{ want, send string }{{"VXNlcm5hbWU6", "alice@example.com"}, {"UGFzc3dvcmQ6", "alicepw"}} {
		if l := c.line(); l != fmt.Sprintf("CONT\t%d\t%s", id, step.want) {
			t.Fatalf("LOGIN got %q", l)
		}
		c.send(fmt.Sprintf("CONT\t%d\t%s\n", id, b64(step.send)))
	}
	if l := c.line(); l != fmt.Sprintf("OK\t%d\tuser=alice@example.com", id) {
		t.Fatalf("LOGIN got %q", l)
	}
	id = c.auth("LOGIN", "\tresp="+b64("alice@example.com"))
	if l := c.line(); l != fmt.Sprintf("CONT\t%d\tUGFzc3dvcmQ6", id) {
		t.Fatalf("LOGIN ir got %q", l)
	}
	c.send(fmt.Sprintf("CONT\t%d\t%s\n", id, b64("wrong")))
	if l := c.line(); l != fmt.Sprintf("FAIL\t%d\tuser=alice@example.com", id) {
		t.Fatalf("LOGIN wrong got %q", l)
	}
}

func cramResponse(user, pw, challengeB64 string) string {
	ch, _ := base64.StdEncoding.DecodeString(challengeB64)
	m := hmac.New(md5.New, []byte(pw))
	m.Write(ch)
	return b64(user + " " + hex.EncodeToString(m.Sum(nil)))
}

func TestCRAMMD5(t *testing.T) {
	ts := start(t, testConfig(), newFakeDir(t))
	c := dial(t, ts.addr)
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"alice@example.com", "alicepw", true}, // {PLAIN}
		{"cram", "secret", true},               // {CRAM-MD5}
		{"cram", "wrong", false},
		{"carol", "secret", false},          // {SSHA} cannot serve CRAM-MD5
		{"bob@example.com", "bobpw", false}, // disabled
		{"nobody", "x", false},
		{"nopw", "", false}, // no password: an HMAC keyed with "" must not pass
	} {
		id := c.auth("CRAM-MD5", "")
		l := c.line()
		pre := fmt.Sprintf("CONT\t%d\t", id)
		if !strings.HasPrefix(l, pre) {
			t.Fatalf("got %q", l)
		}
		ch, _ := base64.StdEncoding.DecodeString(l[len(pre):])
		if !strings.HasPrefix(string(ch), "<") || !strings.HasSuffix(string(ch), ">") {
			t.Errorf("challenge %q", ch)
		}
		c.send(fmt.Sprintf("CONT\t%d\t%s\n", id, cramResponse(tc.user, tc.pw, l[len(pre):])))
		l = c.line()
		if got := strings.HasPrefix(l, fmt.Sprintf("OK\t%d\tuser=%s", id, tc.user)); got != tc.ok {
			t.Errorf("CRAM-MD5 %s/%s: %q", tc.user, tc.pw, l)
		}
	}
}

// scramClient runs a SCRAM exchange (RFC 5802) against the server.
func scramExchange(t *testing.T, c *client, mech, user, pw string) string {
	t.Helper()
	cnonce := "rOprNGfwEbeRWgbNEkqO"
	first := "n,,n=" + user + ",r=" + cnonce
	id := c.auth(mech, "\tresp="+b64(first))
	l := c.line()
	pre := fmt.Sprintf("CONT\t%d\t", id)
	if !strings.HasPrefix(l, pre) {
		return l
	}
	sf, _ := base64.StdEncoding.DecodeString(l[len(pre):])
	var nonce, salt string
	iter := 0
	for _, a := range strings.Split(string(sf), ",") {
		switch a[:2] {
		case "r=":
			nonce = a[2:]
		case "s=":
			salt = a[2:]
		case "i=":
			fmt.Sscan(a[2:], &iter)
		}
	}
	if !strings.HasPrefix(nonce, cnonce) {
		t.Fatalf("server nonce %q", nonce)
	}
	rawSalt, _ := base64.StdEncoding.DecodeString(salt)
	creds, err := password.SCRAMFromPassword(mech, pw, rawSalt, iter)
	if err != nil {
		t.Fatal(err)
	}
	h := password.SCRAMHash(mech)
	final := "c=" + b64("n,,") + ",r=" + nonce
	authMsg := first[3:] + "," + string(sf) + "," + final
	// ClientKey = HMAC(SaltedPassword, "Client Key"); recompute via pbkdf2 path:
	salted := saltedPassword(mech, pw, rawSalt, iter)
	ck := mac(h, salted, "Client Key")
	sig := mac(h, creds.StoredKey, authMsg)
	proof := make([]byte, len(ck))
	for i := range ck {
		proof[i] = ck[i] ^ sig[i]
	}
	c.send(fmt.Sprintf("CONT\t%d\t%s\n", id, b64(final+",p="+base64.StdEncoding.EncodeToString(proof))))
	l = c.line()
	if !strings.HasPrefix(l, pre) {
		return l
	}
	v, _ := base64.StdEncoding.DecodeString(l[len(pre):])
	if string(v) != "v="+base64.StdEncoding.EncodeToString(mac(h, creds.ServerKey, authMsg)) {
		t.Errorf("server signature %q", v)
	}
	c.send(fmt.Sprintf("CONT\t%d\t\n", id))
	return c.line()
}

func TestSCRAM(t *testing.T) {
	ts := start(t, testConfig(), newFakeDir(t))
	c := dial(t, ts.addr)
	for _, tc := range []struct {
		mech, user, pw string
		ok             bool
	}{
		{"SCRAM-SHA-1", "alice@example.com", "alicepw", true},
		{"SCRAM-SHA-256", "alice@example.com", "alicepw", true},
		{"SCRAM-SHA-256", "scram", "secret", true}, // Dovecot-generated {SCRAM-SHA-256}
		{"SCRAM-SHA-256", "scram", "wrong", false},
		{"SCRAM-SHA-1", "scram", "secret", false}, // stored for SHA-256 only
		{"SCRAM-SHA-256", "bob@example.com", "bobpw", false},
		{"SCRAM-SHA-256", "nopw", "", false},
	} {
		l := scramExchange(t, c, tc.mech, tc.user, tc.pw)
		if got := strings.HasPrefix(l, "OK\t") && strings.Contains(l, "user="+tc.user); got != tc.ok {
			t.Errorf("%s %s/%s: %q", tc.mech, tc.user, tc.pw, l)
		}
	}
}

func TestCacheAndMetrics(t *testing.T) {
	dir := newFakeDir(t)
	ts := start(t, testConfig(), dir)
	c := dial(t, ts.addr)
	for i := 0; i < 5; i++ {
		if l := c.plain("alice@example.com", "alicepw"); !strings.HasPrefix(l, "OK") {
			t.Fatal(l)
		}
		c.plain("alice@example.com", "wrong")
	}
	if n := dir.calls.Load(); n != 2 {
		t.Errorf("%d directory calls, want 2 (one positive, one negative)", n)
	}
	if got := value(ts.s.m.cacheHits); got != 8 {
		t.Errorf("cache hits %v", got)
	}
	if got := value(ts.s.m.attempts.WithLabelValues("PLAIN", "ok")); got != 5 {
		t.Errorf("ok attempts %v", got)
	}
	// The directory going down does not matter for cached users…
	dir.down.Store(true)
	if l := c.plain("alice@example.com", "alicepw"); !strings.HasPrefix(l, "OK") {
		t.Errorf("cached while down: %q", l)
	}
	dir.down.Store(false)
	// …and a flush sends the next attempt to the directory again.
	ts.s.FlushCache()
	c.plain("alice@example.com", "alicepw")
	if n := dir.calls.Load(); n != 3 {
		t.Errorf("%d calls after flush", n)
	}
	mfs, err := ts.reg.Gather()
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"dovetail_authd_attempts_total", "dovetail_authd_cache_hits_total", "dovetail_authd_attempt_duration_seconds"} {
		if !names[n] || err != nil {
			t.Errorf("metric %s not gathered (%v)", n, err)
		}
	}
}

func TestCacheUnit(t *testing.T) {
	c := newCache(time.Minute, time.Second, 1000)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	k1, k2 := c.keyFor("u", "old"), c.keyFor("u", "new")
	c.put(k1, "u", grant{user: "U"}, true)
	if u, ok, found := c.get(k1); !found || !ok || u.user != "U" {
		t.Fatal("miss")
	}
	c.put(k2, "u", grant{user: "U"}, true) // password changed: the old one must stop working
	if _, _, found := c.get(k1); found {
		t.Error("old password still cached")
	}
	c.put(c.keyFor("u", "bad"), "u", grant{user: ""}, false)
	now = now.Add(2 * time.Second)
	if _, _, found := c.get(c.keyFor("u", "bad")); found {
		t.Error("negative entry outlived its TTL")
	}
	for i := 0; i < 100; i++ {
		c.put(c.keyFor(fmt.Sprint(i), "p"), fmt.Sprint(i), grant{user: "x"}, true)
	}
	if c.size > 1000 || c.len() > 1000/entryOverhead {
		t.Errorf("cache over its bound: %d bytes, %d entries", c.size, c.len())
	}
	c.forget("99")
	if _, _, found := c.get(c.keyFor("99", "p")); found {
		t.Error("forget")
	}
	if k := c.keyFor("u", "new"); strings.Contains(string(k[:]), "new") {
		t.Error("key contains the password")
	}
}

func TestPenalty(t *testing.T) {
	p := newPenalty(100*time.Millisecond, 700*time.Millisecond)
	k := penaltyKey("192.0.2.1", "alice")
	var got []time.Duration
	for i := 0; i < 5; i++ {
		got = append(got, p.fail(k))
	}
	want := []time.Duration{100, 200, 400, 700, 700}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v", got)
		}
	}
	if d := p.fail(penaltyKey("192.0.2.2", "alice")); d != 100*time.Millisecond {
		t.Errorf("other IP: %v", d)
	}
	p.success(k)
	if d := p.fail(k); d != 100*time.Millisecond {
		t.Errorf("after success: %v", d)
	}
	p.limit = 10
	for i := 0; i < 50; i++ {
		p.fail(fmt.Sprint(i))
	}
	if len(p.m) > 10 {
		t.Errorf("penalty table grew to %d", len(p.m))
	}

	// The login's case and surrounding space do not make a fresh key: the
	// directories match logins that way.
	p = newPenalty(100*time.Millisecond, 700*time.Millisecond)
	for i, login := range []string{"alice@example.com", "Alice@Example.com", " ALICE@EXAMPLE.COM"} {
		if d, want := p.fail(penaltyKey("192.0.2.1", login)), 100*time.Millisecond<<i; d != want {
			t.Errorf("failure %d as %q: delay %v, want %v", i+1, login, d, want)
		}
	}

	// Flooding a full table with fresh keys does not reset a key that has
	// built up failures.
	p = newPenalty(100*time.Millisecond, 700*time.Millisecond)
	p.limit = 10
	for i := 0; i < 3; i++ {
		p.fail(k)
	}
	for i := 0; i < 100; i++ {
		p.fail(fmt.Sprint("flood", i))
	}
	if len(p.m) > 10 {
		t.Errorf("penalty table grew to %d", len(p.m))
	}
	if d := p.fail(k); d != 700*time.Millisecond {
		t.Errorf("after a flood of fresh keys: delay %v, want the 4th failure's 700ms", d)
	}

	// Over the wire: the second failure is delayed, no-penalty is honoured.
	cfg := testConfig()
	cfg.FailureDelay, cfg.FailureDelayMax = config.Duration(150*time.Millisecond), config.Duration(time.Second)
	ts := start(t, cfg, newFakeDir(t))
	c := dial(t, ts.addr)
	t0 := time.Now()
	c.plain("alice@example.com", "wrong1")
	c.plain("alice@example.com", "wrong2")
	if el := time.Since(t0); el < 450*time.Millisecond {
		t.Errorf("two failures took %v, want >= 450ms", el)
	}
	t0 = time.Now()
	c.plain("alice@example.com", "alicepw") // success is never delayed
	c.auth("PLAIN", "\tno-penalty\tresp="+b64("\x00alice@example.com\x00wrong3"))
	c.line()
	if el := time.Since(t0); el > 100*time.Millisecond {
		t.Errorf("success + no-penalty failure took %v", el)
	}
	if got := value(ts.s.m.penalties); got != 2 {
		t.Errorf("penalties %v", got)
	}

	// A penalty never stalls the connection: a request sent while a FAIL is
	// being delayed is answered first, at once.
	c.plain("carol", "wrong") // carol's first failure: 150ms
	t0 = time.Now()
	bad := c.auth("PLAIN", "\tresp="+b64("\x00carol\x00wrong")) // 300ms
	good := c.auth("PLAIN", "\tresp="+b64("\x00alice@example.com\x00alicepw"))
	if l := c.line(); !strings.HasPrefix(l, fmt.Sprintf("OK\t%d\t", good)) {
		t.Fatalf("first reply %q, want OK for %d", l, good)
	}
	if el := time.Since(t0); el > 150*time.Millisecond {
		t.Errorf("OK behind a penalised FAIL took %v", el)
	}
	if l := c.line(); !strings.HasPrefix(l, fmt.Sprintf("FAIL\t%d\t", bad)) {
		t.Fatalf("second reply %q, want FAIL for %d", l, bad)
	}
	if el := time.Since(t0); el < 300*time.Millisecond {
		t.Errorf("penalised FAIL after %v, want >= 300ms", el)
	}
}

func TestUnavailable(t *testing.T) {
	dir := newFakeDir(t)
	ts := start(t, testConfig(), dir)
	dir.down.Store(true)
	c := dial(t, ts.addr)
	c.auth("PLAIN", "\tresp="+b64("\x00alice@example.com\x00alicepw"))
	if !c.closed() {
		t.Fatal("connection not closed on directory outage")
	}
	c = dial(t, ts.addr)
	c.auth("CRAM-MD5", "")
	l := c.line()
	c.send(fmt.Sprintf("CONT\t1\t%s\n", cramResponse("alice@example.com", "alicepw", strings.Split(l, "\t")[2])))
	if !c.closed() {
		t.Fatal("CRAM: connection not closed on directory outage")
	}
	// It recovers by itself.
	dir.down.Store(false)
	c = dial(t, ts.addr)
	if l := c.plain("alice@example.com", "alicepw"); !strings.HasPrefix(l, "OK") {
		t.Errorf("after recovery: %q", l)
	}
	// on_unavailable: fail
	cfg := testConfig()
	cfg.OnUnavailable = "fail"
	ts2 := start(t, cfg, dir)
	dir.down.Store(true)
	c = dial(t, ts2.addr)
	if l := c.plain("carol", "secret"); l != "FAIL\t1\tcode=temp_fail\treason=Temporary authentication failure" {
		t.Errorf("temp fail: %q", l)
	}
}

func TestBadInput(t *testing.T) {
	cfg := testConfig()
	cfg.RequestTimeout = config.Duration(100 * time.Millisecond)
	ts := start(t, cfg, newFakeDir(t))
	closes := []struct{ name, send string }{
		{"unknown mechanism", "AUTH\t1\tXFOO\tservice=smtp\n"},
		{"unknown command", "HELLO\n"},
		{"missing service", "AUTH\t1\tPLAIN\tnologin\n"},
		{"resp not last", "AUTH\t1\tPLAIN\tservice=smtp\tresp=AA==\tnologin\n"},
		{"id zero", "AUTH\t0\tPLAIN\tservice=smtp\n"},
		{"id not a number", "AUTH\tx\tPLAIN\tservice=smtp\n"},
		{"id too big", "AUTH\t4294967296\tPLAIN\tservice=smtp\n"},
		{"duplicate id", "AUTH\t7\tPLAIN\tservice=smtp\n"},
		{"over-long line", "AUTH\t1\tPLAIN\tservice=smtp\tresp=" + strings.Repeat("A", maxLine) + "\n"},
		{"CONT without id", "CONT\n"},
	}
	for _, tc := range closes {
		c := dial(t, ts.addr)
		c.send(tc.send)
		if tc.name == "duplicate id" {
			if l := c.line(); l != "CONT\t7\t" {
				t.Errorf("%s: %q", tc.name, l)
			}
			c.send(tc.send)
		}
		if !c.closed() {
			t.Errorf("%s: connection not closed", tc.name)
		}
	}
	// Wrong handshake.
	for _, hs := range []string{"AUTH\t1\tPLAIN\tservice=smtp\n", "VERSION\t2\t0\n", "\n"} {
		nc, _ := net.Dial("tcp", ts.addr)
		c := &client{t: t, c: nc, r: bufio.NewReader(nc)}
		for c.line() != "DONE" {
		}
		c.send(hs)
		if !c.closed() {
			t.Errorf("handshake %q: not closed", hs)
		}
		nc.Close()
	}
	c := dial(t, ts.addr)
	// Invalid base64: a clear FAIL, the connection stays.
	c.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=!!!\n")
	if l := c.line(); l != "FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response" {
		t.Errorf("invalid base64: %q", l)
	}
	c.send("AUTH\t2\tPLAIN\tservice=smtp\n")
	c.line()
	c.send("CONT\t2\t%%%\n")
	if l := c.line(); l != "FAIL\t2\tcode=invalid_base64\treason=Invalid base64 data in continued response" {
		t.Errorf("invalid base64 in CONT: %q", l)
	}
	// CONT for an unknown id, and for an abandoned one.
	c.send("CONT\t99\tAA==\n")
	if l := c.line(); l != "FAIL\t99\treason=Authentication request timed out" {
		t.Errorf("unknown id: %q", l)
	}
	c.send("AUTH\t3\tLOGIN\tservice=smtp\n")
	c.line()
	time.Sleep(300 * time.Millisecond)
	c.send("CONT\t3\t" + b64("alice@example.com") + "\n")
	if l := c.line(); l != "FAIL\t3\treason=Authentication request timed out" {
		t.Errorf("abandoned id: %q", l)
	}
	if got := value(ts.s.m.attempts.WithLabelValues("LOGIN", "abandoned")); got != 1 {
		t.Errorf("abandoned metric %v", got)
	}
	// CANCEL drops a pending request; the id can be reused.
	c.send("AUTH\t4\tLOGIN\tservice=smtp\nCANCEL\t4\n")
	c.line() // the step runs before CANCEL is read: its challenge comes first
	c.send("AUTH\t4\tPLAIN\tservice=smtp\tresp=" + b64("\x00alice@example.com\x00alicepw") + "\n")
	if l := c.line(); l != "OK\t4\tuser=alice@example.com" {
		t.Errorf("after CANCEL: %q", l)
	}
	// Still alive after all of this.
	if l := c.plain("alice@example.com", "alicepw"); !strings.HasPrefix(l, "OK") {
		t.Errorf("connection unusable: %q", l)
	}
}

// gatedDir holds every password check until the gate is closed.
type gatedDir struct {
	*fakeDir
	gate chan struct{}
}

func (g *gatedDir) Authenticate(ctx context.Context, login, pw string) (*directory.User, error) {
	<-g.gate
	return g.fakeDir.Authenticate(ctx, login, pw)
}

// TestMaxPending: max_pending bounds the requests that run. Requests left
// waiting for a CONT (Postfix never says when an SMTP client gave up with "*")
// make room for new ones instead of locking the connection's other users out
// until request_timeout.
func TestMaxPending(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPending = 2
	dir := &gatedDir{fakeDir: newFakeDir(t), gate: make(chan struct{})}
	ts := start(t, cfg, dir)
	c := dial(t, ts.addr)
	c.send("AUTH\t1\tLOGIN\tservice=smtp\n")
	if l := c.line(); l != "CONT\t1\t"+b64("Username:") {
		t.Fatalf("got %q", l)
	}
	resp := "\tresp=" + b64("\x00alice@example.com\x00alicepw")
	// 2 runs (held by the directory); 3 evicts the abandoned 1 and runs; 4
	// finds both slots running.
	c.send("AUTH\t2\tPLAIN\tservice=smtp" + resp + "\nAUTH\t3\tPLAIN\tservice=smtp" + resp +
		"\nAUTH\t4\tPLAIN\tservice=smtp" + resp + "\nCONT\t1\t" + b64("alice@example.com") + "\n")
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		got[c.line()] = true
	}
	close(dir.gate)
	for i := 0; i < 2; i++ {
		got[c.line()] = true
	}
	for _, want := range []string{
		"FAIL\t4\treason=Too many concurrent authentication requests",
		"FAIL\t1\treason=Authentication request timed out",
		"OK\t2\tuser=alice@example.com",
		"OK\t3\tuser=alice@example.com",
	} {
		if !got[want] {
			t.Errorf("missing %q in replies %v", want, got)
		}
	}
}

func TestConnectionFlood(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := testConfig()
	cfg.MaxConnections = 3
	ts := start(t, cfg, newFakeDir(t))
	var cs []*client
	for i := 0; i < 3; i++ {
		cs = append(cs, dial(t, ts.addr))
	}
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := nc.Read(make([]byte, 10)); err == nil {
		t.Errorf("4th connection got %d bytes, want close", n)
	}
	nc.Close()
	if got := value(ts.s.m.rejected); got != 1 {
		t.Errorf("rejected %v", got)
	}
	for _, c := range cs {
		c.c.Close()
	}
	// Closed connections free their slots and goroutines.
	deadline := time.Now().Add(2 * time.Second)
	for ts.s.active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c := dial(t, ts.addr)
	if l := c.plain("alice@example.com", "alicepw"); !strings.HasPrefix(l, "OK") {
		t.Error(l)
	}
	c.c.Close()
	for ts.s.active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+3 {
		t.Errorf("goroutines: %d before, %d after", before, n)
	}
}

func TestUnixSocketAndShutdown(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(testConfig(), newFakeDir(t), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, c: nc, r: bufio.NewReader(nc)}
	c.send("VERSION\t1\t0\nCPID\t1\n")
	for c.line() != "DONE" {
	}
	if l := c.plain("alice@example.com", "alicepw"); !strings.HasPrefix(l, "OK") {
		t.Fatal(l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !c.closed() {
		t.Error("idle connection not closed by Shutdown")
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.IdleTimeout = 0 // never: valid
	if err := c.Validate(); err != nil {
		t.Fatalf("idle_timeout 0: %v", err)
	}
	c.IdleTimeout = config.Duration(-time.Second)
	c.Mechanisms = []string{"PLAIN", "NTLM"}
	c.FailureDelayMax = config.Duration(9 * time.Second)
	c.OnUnavailable = "panic"
	c.Listen.Address = ""
	err := c.Validate()
	for _, want := range []string{"mechanisms[1]", "failure_delay_max", "on_unavailable", "listen.address", "idle_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

// value reads a counter or gauge.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// TestCacheAccountSpellings: the directories match logins without regard to
// case (and LDAP filters may accept several names for one entry), so the
// cache's "a new password drops the old one" and "a disabled user is
// forgotten" must reach every cached spelling of the account, not only the
// one just used: otherwise an old password keeps working as "Alice" after it
// was changed as "alice", for the whole positive TTL.
func TestCacheAccountSpellings(t *testing.T) {
	c := newCache(time.Hour, time.Minute, 1<<20)
	// Password change seen under another case.
	old := c.keyFor("Alice@Example.com", "old")
	c.put(old, "Alice@Example.com", grant{user: "alice@example.com"}, true)
	c.put(c.keyFor("alice@example.com", "new"), "alice@example.com", grant{user: "alice@example.com"}, true)
	if _, _, found := c.get(old); found {
		t.Error("old password still cached under another spelling of the login")
	}
	// Password change seen under another name of the same entry (an alias the
	// filter also matches): the canonical user is the same.
	alias := c.keyFor("a.smith@example.com", "new")
	c.put(alias, "a.smith@example.com", grant{user: "alice@example.com"}, true)
	c.put(c.keyFor("alice@example.com", "newer"), "alice@example.com", grant{user: "alice@example.com"}, true)
	if _, _, found := c.get(alias); found {
		t.Error("old password still cached under an alias of the account")
	}
	// A disabled account is forgotten under every spelling.
	k := c.keyFor("ALICE@example.com", "newer")
	c.put(k, "ALICE@example.com", grant{user: "alice@example.com"}, true)
	c.forget("alice@example.com")
	if _, _, found := c.get(k); found {
		t.Error("disabled account still cached under another spelling")
	}
	// Other accounts are untouched, and the index does not leak.
	bob := c.keyFor("bob", "pw")
	c.put(bob, "bob", grant{user: "bob"}, true)
	c.forget("alice@example.com")
	if _, _, found := c.get(bob); !found {
		t.Error("forgetting alice dropped bob")
	}
	c.flush()
	c.put(bob, "bob", grant{user: "bob"}, true)
	c.remove(c.items[bob])
	if len(c.byLogin) != 0 || c.size != 0 {
		t.Errorf("index not emptied: %v, size %d", c.byLogin, c.size)
	}
}

// TestCachePasswordChangeOverTheWire: the same through the server with a users
// file whose password changes.
func TestCachePasswordChangeOverTheWire(t *testing.T) {
	d, p := usersFileDir(t, "alice@example.com:{PLAIN}oldpw\n")
	write := func(pw string, mtime time.Time) {
		if err := os.WriteFile(p, []byte("alice@example.com:{PLAIN}"+pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mtime, mtime)
	}
	ts := start(t, testConfig(), d)
	c := dial(t, ts.addr)
	if l := c.plain("Alice@Example.com", "oldpw"); !strings.HasPrefix(l, "OK") {
		t.Fatal(l)
	}
	write("newpw", time.Now().Add(2*time.Second))
	if l := c.plain("alice@example.com", "newpw"); !strings.HasPrefix(l, "OK") {
		t.Fatal(l)
	}
	if l := c.plain("Alice@Example.com", "oldpw"); !strings.HasPrefix(l, "FAIL") {
		t.Errorf("old password after the change, other spelling: %q", l)
	}
}

// The penalty table holds up to 100,000 keys, and its key held the whole
// login: one of up to 9 KB fits in the 12 KB SASL response Postfix passes
// on, and a failure with an over-long (invalid) name still records one, so
// a flood of fresh long names through Postfix's smtpd processes grew the
// table towards a gigabyte. A key has a fixed size, whatever the login.
func TestPenaltyKeyBounded(t *testing.T) {
	long := strings.Repeat("x", 9000)
	if n := len(penaltyKey("192.0.2.1", long)); n > 64 {
		t.Errorf("penalty key for a %d-byte login is %d bytes", len(long), n)
	}
	// Still one key per account and address.
	if penaltyKey("192.0.2.1", "Alice ") != penaltyKey("192.0.2.1", "alice") ||
		penaltyKey("192.0.2.1", "alice") == penaltyKey("192.0.2.2", "alice") ||
		penaltyKey("192.0.2.1", "alice") == penaltyKey("192.0.2.1", "bob") {
		t.Error("penalty keys do not separate accounts and addresses as before")
	}
}

// An IPv6 client owns at least a /64 and can send every attempt from a fresh
// address; keyed by the full address, each guess against an account started
// again at the first delay, so the penalty never grew. Dovecot's auth_penalty
// counts IPv6 clients by their /48 (PENALTY_IPV6_MASK_BITS) for this reason.
// IPv4 addresses, also written IPv4-mapped, stay distinct.
func TestPenaltyIPv6Prefix(t *testing.T) {
	p := newPenalty(100*time.Millisecond, 700*time.Millisecond)
	for i, rip := range []string{"2001:db8:1::1", "2001:db8:1:2::7", "2001:db8:1:ffff:1:2:3:4"} {
		if d, want := p.fail(penaltyKey(rip, "alice")), 100*time.Millisecond<<i; d != want {
			t.Errorf("failure %d from %s: delay %v, want %v", i+1, rip, d, want)
		}
	}
	if penaltyKey("2001:db8:1::1", "alice") == penaltyKey("2001:db8:2::1", "alice") {
		t.Error("different /48 networks share a penalty")
	}
	if penaltyKey("192.0.2.1", "alice") == penaltyKey("192.0.2.2", "alice") ||
		penaltyKey("::ffff:192.0.2.1", "alice") == penaltyKey("::ffff:192.0.2.2", "alice") {
		t.Error("IPv4 clients share a penalty")
	}
	if penaltyKey("::ffff:192.0.2.1", "alice") != penaltyKey("192.0.2.1", "alice") {
		t.Error("an IPv4-mapped address is not the IPv4 client")
	}
}

// slowHashDir is a directory whose password check costs hashTime for a user
// that exists, as a real stored hash does (or an LDAP bind), while an unknown
// user is answered at once.
type slowHashDir struct {
	*fakeDir
	hashTime time.Duration
}

func (d *slowHashDir) Authenticate(ctx context.Context, login, pw string) (*directory.User, error) {
	if _, err := d.LookupLogin(ctx, login); err == nil {
		time.Sleep(d.hashTime)
	}
	return d.fakeDir.Authenticate(ctx, login, pw)
}

// A failure's delay counted from the end of the password check, so a FAIL
// for an existing user came later than one for an unknown user by the cost
// of the hash: timing SMTP AUTH told an attacker which accounts exist. The
// delay now runs from the start of the step, which hides a check shorter than
// it; over a step's data the client has no say (LOGIN's earlier steps do not
// count).
func TestFailureTimingHidesUnknownUser(t *testing.T) {
	const hash, delay = 250 * time.Millisecond, 500 * time.Millisecond
	cfg := testConfig()
	cfg.FailureDelay, cfg.FailureDelayMax = config.Duration(delay), config.Duration(time.Second)
	ts := start(t, cfg, &slowHashDir{fakeDir: newFakeDir(t), hashTime: hash})
	c := dial(t, ts.addr)
	timed := func(user string) time.Duration {
		t0 := time.Now()
		if l := c.plain(user, "wrong"); !strings.HasPrefix(l, "FAIL") {
			t.Fatalf("%s: %q", user, l)
		}
		return time.Since(t0)
	}
	unknown, known := timed("nobody@example.com"), timed("alice@example.com")
	if unknown < delay || known < delay {
		t.Errorf("failures answered after %v and %v, before the %v delay", unknown, known, delay)
	}
	if known-unknown > hash/2 {
		t.Errorf("FAIL for an existing user took %v, for an unknown one %v: the hash time shows", known, unknown)
	}

	// LOGIN: the wait before the password step does not shorten its delay.
	id := c.auth("LOGIN", "")
	c.line()
	c.send(fmt.Sprintf("CONT\t%d\t%s\n", id, b64("carol")))
	c.line()
	time.Sleep(delay)
	t0 := time.Now()
	c.send(fmt.Sprintf("CONT\t%d\t%s\n", id, b64("wrong")))
	if l := c.line(); !strings.HasPrefix(l, "FAIL") {
		t.Fatalf("LOGIN: %q", l)
	}
	if el := time.Since(t0); el < delay {
		t.Errorf("LOGIN failure answered after %v, before the %v delay", el, delay)
	}
}
