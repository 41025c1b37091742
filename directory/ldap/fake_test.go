package ldap

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/config"
)

// fakeLDAP is a scripted LDAP server for behaviour slapd cannot be made to show
// on demand: it records the operations it receives and answers each with what
// answer returns (nil: never answer, as a hung server).
type fakeLDAP struct {
	ln       net.Listener
	answer   func(op *ber.Packet) []*ber.Packet // response operations, without envelope
	accepted atomic.Int32
	mu       sync.Mutex
	ops      []ber.Tag // application tags of the requests, in order
	conns    []net.Conn
	wg       sync.WaitGroup
}

// LDAP application tags (RFC 4511).
const (
	tagBindRequest  ber.Tag = 0
	tagBindResponse ber.Tag = 1
	tagSearch       ber.Tag = 3
	tagEntry        ber.Tag = 4
	tagSearchDone   ber.Tag = 5
	tagExtended     ber.Tag = 23
	tagExtendedResp ber.Tag = 24
)

func newFakeLDAP(t *testing.T, answer func(op *ber.Packet) []*ber.Packet) *fakeLDAP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLDAP{ln: ln, answer: answer}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeLDAP) addr() string { return f.ln.Addr().String() }

func (f *fakeLDAP) setAnswer(answer func(op *ber.Packet) []*ber.Packet) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

func (f *fakeLDAP) tags() []ber.Tag {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ber.Tag(nil), f.ops...)
}

func (f *fakeLDAP) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.accepted.Add(1)
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			for {
				p, err := ber.ReadPacket(c)
				if err != nil || len(p.Children) < 2 {
					return
				}
				id, op := p.Children[0].Value, p.Children[1]
				f.mu.Lock()
				f.ops = append(f.ops, op.Tag)
				answer := f.answer
				f.mu.Unlock()
				for _, r := range answer(op) {
					env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
					env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
					env.AppendChild(r)
					if _, err := c.Write(env.Bytes()); err != nil {
						return
					}
				}
			}
		}()
	}
}

func ldapResult(tag ber.Tag, code int64) *ber.Packet {
	r := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "Result")
	r.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, "resultCode"))
	r.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	r.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "fake", "diagnosticMessage"))
	return r
}

func ldapEntry(dn string, attrs map[string]string) *ber.Packet {
	multi := make(map[string][]string, len(attrs))
	for k, v := range attrs {
		multi[k] = []string{v}
	}
	return ldapEntryMulti(dn, multi)
}

// ldapEntryMulti is ldapEntry with several values per attribute.
func ldapEntryMulti(dn string, attrs map[string][]string) *ber.Packet {
	e := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tagEntry, nil, "Entry")
	e.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "DN"))
	as := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for k, vals := range attrs {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attribute")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, k, "Type"))
		vs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "Values")
		for _, v := range vals {
			vs.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "Value"))
		}
		a.AppendChild(vs)
		as.AppendChild(a)
	}
	e.AppendChild(as)
	return e
}

func fakeConfig(uri string) Config {
	c := DefaultConfig()
	c.URIs = []string{uri}
	c.BaseDN = "ou=people,dc=example,dc=com"
	c.UserFilter = "(cn=%u)"
	c.AddressFilter = "(mail=%u)"
	c.PoolSize, c.AuthPoolSize = 2, 2
	c.DialTimeout = config.Duration(time.Second)
	c.Timeout = config.Duration(3 * time.Second)
	return c
}

func inner(d directory.Directory) *Directory {
	if p, ok := d.(passwordDirectory); ok {
		return p.Directory
	}
	return d.(*Directory)
}

// TestStartTLSSchemeCase: the URI scheme is case-insensitive (RFC 3986), so with
// starttls the first thing sent on LDAP://… must be StartTLS too, never the
// service bind with its password in clear text.
func TestStartTLSSchemeCase(t *testing.T) {
	for _, scheme := range []string{"ldap", "LDAP", "Ldap"} {
		t.Run(scheme, func(t *testing.T) {
			f := newFakeLDAP(t, func(op *ber.Packet) []*ber.Packet {
				switch op.Tag {
				case tagExtended: // refuse StartTLS: the test only needs to see it asked for
					return []*ber.Packet{ldapResult(tagExtendedResp, 2)}
				case tagBindRequest:
					return []*ber.Packet{ldapResult(tagBindResponse, 0)}
				}
				return []*ber.Packet{ldapResult(tagSearchDone, 0)}
			})
			cfg := fakeConfig(scheme + "://" + f.addr())
			cfg.StartTLS = true
			cfg.BindDN, cfg.BindPassword = "cn=admin,dc=example,dc=com", "adminsecret"
			d, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if _, err := d.LookupLogin(context.Background(), "alice"); !errors.Is(err, directory.ErrUnavailable) {
				t.Errorf("LookupLogin with StartTLS refused = %v, want ErrUnavailable", err)
			}
			tags := f.tags()
			if len(tags) == 0 || tags[0] != tagExtended {
				t.Errorf("requests %v: StartTLS (%d) was not the first", tags, tagExtended)
			}
			for _, tag := range tags {
				if tag == tagBindRequest {
					t.Errorf("requests %v: a bind was sent without TLS", tags)
				}
			}
		})
	}
}

// answerAlice is a server that accepts every bind and finds alice for every
// search.
func answerAlice(op *ber.Packet) []*ber.Packet {
	switch op.Tag {
	case tagBindRequest:
		return []*ber.Packet{ldapResult(tagBindResponse, 0)}
	case tagSearch:
		return []*ber.Packet{ldapEntry("cn=alice,ou=people,dc=example,dc=com", map[string]string{"cn": "alice"}),
			ldapResult(tagSearchDone, 0)}
	}
	return []*ber.Packet{ldapResult(tagSearchDone, 53)}
}

// TestCancelInterruptsRequest: a cancelled caller gets its answer at once, not
// after the request timeout (3 s here), from a server that never answers; the
// connection is discarded and not retried.
func TestCancelInterruptsRequest(t *testing.T) {
	var hang atomic.Bool
	f := newFakeLDAP(t, func(op *ber.Packet) []*ber.Packet {
		if hang.Load() {
			return nil
		}
		return answerAlice(op)
	})
	d, err := New(fakeConfig("ldap://"+f.addr()), nil) // bind mode, anonymous searches
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dir := inner(d)
	cancelled := func(what string, op func(context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		err := op(ctx)
		if el := time.Since(start); el > time.Second {
			t.Errorf("%s: returned %v after the cancel, the timeout is 3s", what, el-100*time.Millisecond)
		}
		if !errors.Is(err, directory.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s = %v, want ErrUnavailable wrapping context.Canceled", what, err)
		}
	}
	lookup := func(ctx context.Context) error { _, err := d.LookupLogin(ctx, "alice"); return err }
	auth := func(ctx context.Context) error { _, err := d.Authenticate(ctx, "alice", "alicepw"); return err }

	// Fresh connections.
	hang.Store(true)
	cancelled("search on a new connection", lookup)
	// Pooled connections: a cancelled request must not be retried on a new one.
	hang.Store(false)
	if err := auth(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(dir.search.idle) != 1 || len(dir.auth.idle) != 1 {
		t.Fatalf("idle connections: search %d, auth %d, want 1 each", len(dir.search.idle), len(dir.auth.idle))
	}
	before := f.accepted.Load()
	hang.Store(true)
	cancelled("search on a pooled connection", lookup)
	if n := len(dir.search.idle); n != 0 {
		t.Errorf("%d idle search connections after the cancel: the abandoned one was pooled", n)
	}
	// The auth bind: the search answers, the bind hangs.
	f.setAnswer(func(op *ber.Packet) []*ber.Packet {
		if op.Tag == tagBindRequest {
			return nil
		}
		if op.Tag == tagSearch {
			return []*ber.Packet{ldapEntry("cn=alice,ou=people,dc=example,dc=com", map[string]string{"cn": "alice"}),
				ldapResult(tagSearchDone, 0)}
		}
		return []*ber.Packet{ldapResult(tagSearchDone, 53)}
	})
	cancelled("auth bind on a pooled connection", auth)
	if n := len(dir.auth.idle); n != 0 {
		t.Errorf("%d idle auth connections after the cancel", n)
	}
	if n := f.accepted.Load() - before; n > 1 { // the new search connection only
		t.Errorf("%d connections dialled after cancels: a cancelled request was retried", n)
	}
	// An already-cancelled context sends nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := lookup(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("lookup with a cancelled context = %v", err)
	}
}

// TestSearchBaseMissing: noSuchObject from a search means base_dn is missing,
// which is a temporary server-side failure (as in Dovecot), not "no such user":
// ErrNotFound would bounce mail with 550 and reject logins with 535.
func TestSearchBaseMissing(t *testing.T) {
	var code atomic.Int64
	f := newFakeLDAP(t, func(op *ber.Packet) []*ber.Packet {
		if op.Tag == tagBindRequest {
			return []*ber.Packet{ldapResult(tagBindResponse, 0)}
		}
		return []*ber.Packet{ldapResult(tagSearchDone, code.Load())}
	})
	for _, mode := range []string{ModeBind, ModePassword} {
		cfg := fakeConfig("ldap://" + f.addr())
		cfg.AuthMode = mode
		cfg.BindDN, cfg.BindPassword = "cn=admin,dc=example,dc=com", "adminsecret"
		d, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		ops := map[string]func() error{
			"LookupAddress": func() error { _, err := d.LookupAddress(ctx, "alice@example.com"); return err },
			"LookupLogin":   func() error { _, err := d.LookupLogin(ctx, "alice"); return err },
			"Authenticate":  func() error { _, err := d.Authenticate(ctx, "alice", "alicepw"); return err },
		}
		for name, op := range ops {
			code.Store(32) // noSuchObject
			if err := op(); !errors.Is(err, directory.ErrUnavailable) || errors.Is(err, directory.ErrNotFound) {
				t.Errorf("%s/%s with base_dn missing = %v, want ErrUnavailable only", mode, name, err)
			}
			code.Store(0) // success, no entries
			if err := op(); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("%s/%s with no entry = %v, want ErrNotFound", mode, name, err)
			}
		}
		d.Close()
	}
}

// TestFailoverPastHungServers: a server that hangs (accepts and never answers,
// or a host that is down) costs a whole timeout per connection attempt, so one
// request's deadline may run out before it reaches a working URI — with the
// defaults (timeout 5s, authd's lookup_timeout 5s) already with a single hung
// primary. The next request must go on where that one gave up, not start at
// the first URI again, or the directory stays "unavailable" for as long as the
// hung servers are down although another one answers.
func TestFailoverPastHungServers(t *testing.T) {
	hung := func(*ber.Packet) []*ber.Packet { return nil }
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name     string
		hung     int
		deadline time.Duration // the caller's, like authd's lookup_timeout
	}{
		{"one hung primary, deadline = timeout", 1, timeout},
		{"two hung, deadline = 1.5 timeouts", 2, timeout * 3 / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var uris []string
			for range tc.hung {
				uris = append(uris, "ldap://"+newFakeLDAP(t, hung).addr())
			}
			working := newFakeLDAP(t, answerAlice)
			cfg := fakeConfig("ldap://" + working.addr())
			cfg.URIs = append(uris, cfg.URIs...)
			cfg.BindDN, cfg.BindPassword = "cn=admin,dc=example,dc=com", "adminsecret"
			cfg.Timeout = config.Duration(timeout)
			d, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var last error
			for i := 0; i <= tc.hung; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
				_, last = d.Authenticate(ctx, "alice", "alicepw") // bind mode: search, then auth bind
				cancel()
				if last == nil {
					break
				}
				if !errors.Is(last, directory.ErrUnavailable) {
					t.Fatalf("attempt %d: %v, want ErrUnavailable", i, last)
				}
			}
			if last != nil || working.accepted.Load() == 0 {
				t.Fatalf("the working URI was never reached: %v", last)
			}
			// It sticks: the next lookups go straight to the working server.
			start := time.Now()
			if _, err := d.Authenticate(context.Background(), "alice", "alicepw"); err != nil || time.Since(start) > timeout/2 {
				t.Errorf("after failover: %v in %v", err, time.Since(start))
			}
		})
	}
}

// TestAllowNetsAttribute: attributes.allow_nets is fetched on authentication
// (both modes) and handed to authd under the passdb field name allow_nets.
func TestAllowNetsAttribute(t *testing.T) {
	f := newFakeLDAP(t, func(op *ber.Packet) []*ber.Packet {
		if op.Tag == tagBindRequest {
			return []*ber.Packet{ldapResult(tagBindResponse, 0)}
		}
		return []*ber.Packet{
			ldapEntry("cn=alice,ou=people,dc=example,dc=com", map[string]string{
				"cn": "alice", "mailAllowNets": "192.0.2.0/24", "userPassword": "{PLAIN}alicepw"}),
			ldapResult(tagSearchDone, 0),
		}
	})
	for _, mode := range []string{ModeBind, ModePassword} {
		cfg := fakeConfig("ldap://" + f.addr())
		cfg.AuthMode = mode
		cfg.Attributes.AllowNets = "mailAllowNets"
		cfg.BindDN, cfg.BindPassword = "cn=admin,dc=example,dc=com", "adminsecret"
		d, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		u, err := d.Authenticate(context.Background(), "alice", "alicepw")
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if got := u.Attrs["allow_nets"]; len(got) != 1 || got[0] != "192.0.2.0/24" {
			t.Errorf("%s: allow_nets = %q", mode, got)
		}
		d.Close()
	}
}

// TestAllowNetsMultiValued: an allow_nets attribute with one network per
// value (the usual LDAP modelling) lists the networks the user may log in
// from. authd treats every allow_nets value as a separate restriction that
// must admit the client (as for allow_nets plus allow_real_nets), so the
// values must reach it as one list: handed over one by one, a user with an
// office and a VPN network could log in from neither.
func TestAllowNetsMultiValued(t *testing.T) {
	f := newFakeLDAP(t, func(op *ber.Packet) []*ber.Packet {
		if op.Tag == tagBindRequest {
			return []*ber.Packet{ldapResult(tagBindResponse, 0)}
		}
		return []*ber.Packet{
			ldapEntryMulti("cn=alice,ou=people,dc=example,dc=com", map[string][]string{
				"cn": {"alice"}, "mailAllowNets": {"192.0.2.0/24", "2001:db8::/32"}}),
			ldapResult(tagSearchDone, 0),
		}
	})
	cfg := fakeConfig("ldap://" + f.addr())
	cfg.Attributes.AllowNets = "mailAllowNets"
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	u, err := d.Authenticate(context.Background(), "alice", "alicepw")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Attrs["allow_nets"]; len(got) != 1 || got[0] != "192.0.2.0/24,2001:db8::/32" {
		t.Errorf("allow_nets = %q, want one list of both networks", got)
	}
}

// In password mode a stored hash is verified here, after the search: when the
// caller's deadline has passed by then (the hash waited for a free slot), the
// answer is a temporary failure, not a verdict on the password.
func TestVerifyAfterDeadline(t *testing.T) {
	ctx := &givenUpCtx{Context: context.Background()}
	f := newFakeLDAP(t, func(op *ber.Packet) []*ber.Packet {
		switch op.Tag {
		case tagBindRequest:
			return []*ber.Packet{ldapResult(tagBindResponse, 0)}
		case tagSearch:
			ctx.gone.Store(true) // the caller gives up while the entry is on its way
			return []*ber.Packet{ldapEntry("cn=alice,ou=people,dc=example,dc=com", map[string]string{
				"cn": "alice", "userPassword": "{SHA512-CRYPT}$6$dxfgCnrrcKFHq/5K$wfaiyiBHfuC411NC3ptye2LedgZWOZQUgzj3R0v7a9m714dVEjmjhBuSTVKUHj9Wgwaqy/0TgJ/DG2fs6TYAz/"}),
				ldapResult(tagSearchDone, 0)}
		}
		return []*ber.Packet{ldapResult(tagSearchDone, 53)}
	})
	cfg := fakeConfig("ldap://" + f.addr())
	cfg.AuthMode = ModePassword
	cfg.BindDN, cfg.BindPassword = "cn=admin,dc=example,dc=com", "adminsecret"
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if u, err := d.Authenticate(ctx, "alice", "secret"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("Authenticate = %v, %v; want ErrUnavailable", u, err)
	}
}

// givenUpCtx reports itself cancelled once gone is set, without a Done
// channel that would also interrupt the LDAP request in flight.
type givenUpCtx struct {
	context.Context
	gone atomic.Bool
}

func (c *givenUpCtx) Err() error {
	if c.gone.Load() {
		return context.Canceled
	}
	return nil
}
