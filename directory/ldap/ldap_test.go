package ldap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func testConfig(s *testenv.SlapdServer, mode string) Config {
	c := DefaultConfig()
	c.URIs = []string{s.URL}
	c.BindDN, c.BindPassword = s.AdminDN, Secret(s.AdminPassword)
	c.BaseDN = s.PeopleDN
	c.AuthMode = mode
	c.UserFilter = "(cn=%u)"
	c.PoolSize, c.AuthPoolSize = 2, 2
	c.Timeout = config.Duration(2 * time.Second)
	return c
}

func TestAuthenticateModes(t *testing.T) {
	s := testenv.Slapd(t)
	ctx := context.Background()
	for _, mode := range []string{ModeBind, ModePassword} {
		t.Run(mode, func(t *testing.T) {
			d, err := New(testConfig(s, mode), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			_, isSecret := d.(directory.SecretReader)
			if isSecret != (mode == ModePassword) {
				t.Errorf("SecretReader = %v in %s mode", isSecret, mode)
			}
			for _, tc := range []struct {
				login, pw string
				want      error
			}{
				{"alice", "alicepw", nil},
				{"ALICE", "alicepw", nil},
				{"alice", "wrong", directory.ErrInvalidCredentials},
				{"alice", "", directory.ErrInvalidCredentials},
				{"bob", "bobpw", directory.ErrDisabled},
				{"bob", "wrong", directory.ErrInvalidCredentials},
				{"nobody", "x", directory.ErrNotFound},
				{"*)(cn=*", "alicepw", directory.ErrNotFound},
				{"*", "alicepw", directory.ErrNotFound},
				{"alice)(|(cn=*", "alicepw", directory.ErrNotFound},
			} {
				u, err := d.Authenticate(ctx, tc.login, tc.pw)
				if !errors.Is(err, tc.want) {
					t.Errorf("Authenticate(%q, %q) = %v, want %v", tc.login, tc.pw, err, tc.want)
				}
				if err == nil && u.Login != "alice" {
					t.Errorf("canonical login = %q", u.Login)
				}
			}
			// With the status in the filter a disabled user is simply not found.
			cfg := testConfig(s, mode)
			cfg.PassFilter = "(&(cn=%u)(status=valid))"
			d2, _ := New(cfg, nil)
			defer d2.Close()
			if _, err := d2.Authenticate(ctx, "bob", "bobpw"); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("bob with status filter: %v", err)
			}
		})
	}
}

func TestLookups(t *testing.T) {
	s := testenv.Slapd(t)
	d, err := New(testConfig(s, ModePassword), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	u, err := d.LookupAddress(ctx, "c.smith@example.com")
	if err != nil || u.Login != "carol" || len(u.Addresses) != 2 || !u.Enabled || u.Home == "" || u.UID != testenv.MailUID {
		t.Fatalf("LookupAddress = %+v, %v", u, err)
	}
	u, err = d.LookupLogin(ctx, "bob")
	if err != nil || u.Enabled {
		t.Fatalf("bob = %+v, %v", u, err)
	}
	if _, err := d.LookupAddress(ctx, "*"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("wildcard address: %v", err)
	}
	scheme, data, u, err := d.(directory.SecretReader).StoredPassword(ctx, "alice")
	if err != nil || scheme == "" || data == "" || u.Login != "alice" {
		t.Errorf("StoredPassword = %q %q %v", scheme, data, err)
	}
}

func TestFailoverAndOutage(t *testing.T) {
	s := testenv.Slapd(t)
	cfg := testConfig(s, ModeBind)
	cfg.URIs = []string{"ldap://127.0.0.1:1", s.URL} // first one refuses
	cfg.DialTimeout = config.Duration(500 * time.Millisecond)
	var logs bytes.Buffer
	d, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if _, err := d.Authenticate(ctx, "alice", "alicepw"); err != nil {
		t.Fatalf("failover: %v", err)
	}
	if strings.Contains(logs.String(), "adminsecret") {
		t.Errorf("password in logs: %s", logs.String())
	}

	s.Stop(t)
	defer s.Start(t)
	start := time.Now()
	if _, err := d.Authenticate(ctx, "alice", "alicepw"); !errors.Is(err, directory.ErrUnavailable) {
		t.Fatalf("slapd down: %v", err)
	}
	if _, err := d.LookupLogin(ctx, "alice"); !errors.Is(err, directory.ErrUnavailable) {
		t.Fatalf("slapd down: %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("outage detection took %v", el)
	}
	s.Start(t)
	if _, err := d.Authenticate(ctx, "alice", "alicepw"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestLDAPISocket(t *testing.T) {
	s := testenv.Slapd(t)
	if s.LDAPIURL == "" {
		testenv.SkipOrFail(t, "testenv slapd has no ldapi listener")
	}
	cfg := testConfig(s, ModePassword)
	cfg.URIs = []string{s.LDAPIURL}
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Authenticate(context.Background(), "alice", "alicepw"); err != nil {
		t.Fatalf("over %s: %v", s.LDAPIURL, err)
	}
	for _, bad := range []string{"http://x", "ldap//x", "ldapi://%zz"} {
		if _, _, err := splitURI(bad); err == nil {
			t.Errorf("splitURI(%q) accepted", bad)
		}
	}
}

func TestPoolBounded(t *testing.T) {
	s := testenv.Slapd(t)
	for _, mode := range []string{ModeBind, ModePassword} {
		d, err := New(testConfig(s, mode), nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := d.Authenticate(context.Background(), "carol", "carolpw"); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("%s: %v", mode, err)
		}
		inner := d
		if p, ok := d.(passwordDirectory); ok {
			inner = p.Directory
		}
		if n := len(inner.(*Directory).search.idle); n > 2 {
			t.Errorf("%d idle connections, pool size 2", n)
		}
		d.Close()
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.AuthMode = "magic"
	c.Scope = "deep"
	c.UserFilter = "(cn=%u"
	c.URIs = []string{"http://x"}
	err := c.Validate()
	for _, want := range []string{"uris[0]", "base_dn", "scope", "user_filter", "auth_mode"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if got := fmt.Sprintf("%v %s %#v", Secret("pw"), Secret("pw"), Secret("pw")); strings.Contains(got, "pw\"") || strings.Contains(got, " pw") {
		t.Errorf("secret leaked: %s", got)
	}
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "password", Secret("hunter2"))
	if strings.Contains(b.String(), "hunter2") {
		t.Errorf("secret in slog: %s", b.String())
	}
}

// TestFilterTemplateUnknownVariable: a variable expandFilter does not fill
// (Dovecot's %Ld, %{domain}, a stray %) would stay in the filter as literal
// text, so the filter matches nobody and every user is "not found": mail to
// all of them bounces with 5.1.1. The config check refuses it instead.
func TestFilterTemplateUnknownVariable(t *testing.T) {
	for _, tmpl := range []string{
		"(&(uid=%n)(mailDomain=%Ld))",
		"(&(uid=%u)(o=%{domain}))",
		"(&(uid=%n)(o=%D))",
		"(&(cn=%u)(description=100%))",
	} {
		c := DefaultConfig()
		c.URIs, c.BaseDN = []string{"ldap://127.0.0.1"}, "dc=example,dc=com"
		c.UserFilter = tmpl
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "user_filter") {
			t.Errorf("user_filter %q: Validate = %v, want an error naming user_filter", tmpl, err)
		}
	}
	for _, tmpl := range []string{"(&(uid=%n)(dc=%d))", "(cn=%u%%)", "(|(mail=%u)(mail=%n@%d))"} {
		if err := checkFilter(tmpl); err != nil {
			t.Errorf("checkFilter(%q) = %v, want nil", tmpl, err)
		}
	}
}

func TestExpandFilter(t *testing.T) {
	for _, tc := range []struct{ tmpl, login, want string }{
		{"(&(cn=%u)(status=valid))", "alice", "(&(cn=alice)(status=valid))"},
		{"(cn=%u)", "*)(cn=*", `(cn=\2a\29\28cn=\2a)`},
		{"(&(uid=%n)(dc=%d))", "a@b.org", "(&(uid=a)(dc=b.org))"},
		{"(cn=%u%%)", `a\b`, `(cn=a\5cb%)`},
	} {
		if got := expandFilter(tc.tmpl, tc.login); got != tc.want {
			t.Errorf("expandFilter(%q, %q) = %q, want %q", tc.tmpl, tc.login, got, tc.want)
		}
	}
}

// TestFailoverWhileRunning: the first URI serves until it dies; requests then
// move to the second without an error reaching the caller (the stale pooled
// connection is retried once on a fresh one), in both modes.
func TestFailoverWhileRunning(t *testing.T) {
	s := testenv.Slapd(t)
	for _, mode := range []string{ModeBind, ModePassword} {
		t.Run(mode, func(t *testing.T) {
			primary := newProxy(t, strings.TrimPrefix(s.URL, "ldap://"))
			cfg := testConfig(s, mode)
			cfg.URIs = []string{primary.uri(), s.URL}
			d, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			for range 3 {
				if _, err := d.Authenticate(ctx, "alice", "alicepw"); err != nil {
					t.Fatal(err)
				}
			}
			if primary.accepted.Load() == 0 {
				t.Fatal("the first URI was not used")
			}
			primary.shut()
			for i := range 3 {
				if _, err := d.Authenticate(ctx, "alice", "alicepw"); err != nil {
					t.Fatalf("after the first URI died, attempt %d: %v", i, err)
				}
			}
			if _, err := d.Authenticate(ctx, "alice", "wrong"); !errors.Is(err, directory.ErrInvalidCredentials) {
				t.Errorf("wrong password via the second URI: %v", err)
			}
		})
	}
}

// TestTimeouts: a server that accepts but never answers (hung slapd) costs one
// request timeout and is reported as unavailable, for the service bind, the
// search and the auth bind, and the caller's deadline is honoured.
func TestTimeouts(t *testing.T) {
	s := testenv.Slapd(t)
	const timeout = 300 * time.Millisecond
	for _, mode := range []string{ModeBind, ModePassword} {
		t.Run(mode, func(t *testing.T) {
			p := newProxy(t, strings.TrimPrefix(s.URL, "ldap://"))
			cfg := testConfig(s, mode)
			cfg.URIs = []string{p.uri()}
			cfg.Timeout = config.Duration(timeout)
			d, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			check := func(what string, op func(context.Context) error, limit time.Duration) {
				t.Helper()
				start := time.Now()
				err := op(ctx)
				if !errors.Is(err, directory.ErrUnavailable) {
					t.Errorf("%s on a hung server: %v, want ErrUnavailable", what, err)
				}
				if el := time.Since(start); el > limit {
					t.Errorf("%s took %v (timeout %v)", what, el, timeout)
				}
			}
			auth := func(ctx context.Context) error { _, err := d.Authenticate(ctx, "alice", "alicepw"); return err }
			lookup := func(ctx context.Context) error { _, err := d.LookupLogin(ctx, "alice"); return err }

			// Hung before the first answer: the service bind of a new connection.
			p.frozen.Store(true)
			check("service bind", auth, 3*timeout)
			// Working connections in the pool, then the server hangs mid-use:
			// the search (and its one retry on a fresh connection) time out.
			p.frozen.Store(false)
			if err := auth(ctx); err != nil {
				t.Fatal(err)
			}
			p.frozen.Store(true)
			check("search", lookup, 4*timeout)
			check("authenticate", auth, 4*timeout)
			// The caller's deadline wins over the configured timeout.
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := auth(short); !errors.Is(err, directory.ErrUnavailable) {
				t.Errorf("with a 50ms deadline: %v", err)
			}
			if el := time.Since(start); el > timeout {
				t.Errorf("a 50ms deadline took %v", el)
			}
			// The server answers again: no restart needed.
			p.frozen.Store(false)
			if err := auth(ctx); err != nil {
				t.Errorf("after the hang: %v", err)
			}
		})
	}
}

// TestPoolConnectionsBounded counts the LDAP connections actually open while
// 64 logins run at once: never more than pool_size + auth_pool_size.
func TestPoolConnectionsBounded(t *testing.T) {
	s := testenv.Slapd(t)
	for _, mode := range []string{ModeBind, ModePassword} {
		t.Run(mode, func(t *testing.T) {
			p := newProxy(t, strings.TrimPrefix(s.URL, "ldap://"))
			cfg := testConfig(s, mode)
			cfg.URIs = []string{p.uri()}
			cfg.PoolSize, cfg.AuthPoolSize = 3, 2
			d, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var wg sync.WaitGroup
			var failed atomic.Int32
			for i := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					pw := "carolpw"
					if i%4 == 0 {
						pw = "wrong"
					}
					if _, err := d.Authenticate(context.Background(), "carol", pw); (err == nil) != (pw == "carolpw") {
						failed.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := failed.Load(); n > 0 {
				t.Errorf("%d wrong verdicts", n)
			}
			want := int32(cfg.PoolSize)
			if mode == ModeBind {
				want += int32(cfg.AuthPoolSize)
			}
			if peak := p.peak.Load(); peak > want || peak < 2 {
				t.Errorf("peak %d LDAP connections, bound %d", peak, want)
			}
			if acc := p.accepted.Load(); acc > want {
				t.Errorf("%d connections dialled for %d pooled: connections are not reused", acc, want)
			}
		})
	}
}
