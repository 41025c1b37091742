// Command authd-bench is a Dovecot auth-client protocol load generator: it speaks
// to an auth socket exactly like Postfix (smtpd_sasl_type = dovecot) and like the
// peer's auth_bench.py (../shared/peers/auth), so dovetail authd and Dovecot's
// own auth service are measured with the same client.
//
//	authd-bench -socket /path/auth-client -n 60000 -c 8 -mode hit
//	authd-bench -addr 127.0.0.1:12345 -n 15000 -c 1 -mode miss -users 1000
//	authd-bench -ldap ldap://127.0.0.1:46389 -passdb bind -n 15000 -c 8 -mode miss
//
// Each connection has one request in flight (the next AUTH goes out after the
// reply), connections start together after a warm-up login each. hit: every
// request is user u0000; miss: request i uses user u(i mod users). Password of
// uNNNN is secret-NNNN (the peer's user set). Prints one JSON line.
//
// With -ldap there is no auth daemon: every client connection does itself the
// LDAP work an LDAP passdb does per uncached login (the "floor": the best any
// auth daemon doing the same LDAP operations could reach). It holds a go-ldap
// connection bound as the service account (-binddn/-bindpw) and per login
// searches -base (one level) with -filter (%u = the escaped login) for the
// attributes Dovecot's pass_attrs asks for; -passdb bind then does a simple
// bind as the found DN on a second connection of its own (as dovetail's
// auth-bind pool), -passdb attr also fetches userPassword and checks the {SSHA}
// hash itself (with directory/password). A login that does not succeed is an error, as a FAIL reply is.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dovetail-mail/dovetail/directory"
	dirldap "github.com/dovetail-mail/dovetail/directory/ldap"
	"github.com/dovetail-mail/dovetail/directory/password"
)

// client is one connection of the load generator: to an auth socket (conn) or,
// for the floor, straight to LDAP (ldapClient).
type client interface {
	// login returns nil for a successful login; a refused one wraps errFail.
	login(user, pw string) error
	close()
}

// errFail is a refused login (a FAIL reply, or no entry / wrong password in LDAP).
var errFail = errors.New("FAIL")

type conn struct {
	c     net.Conn
	r     *bufio.Reader
	id    int
	b     []byte
	extra string // parameters before resp= on every AUTH (the probe's no-penalty)
}

func dial(network, addr string) (*conn, error) {
	nc, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	c := &conn{c: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	if _, err := fmt.Fprintf(nc, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid()); err != nil {
		return nil, err
	}
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("handshake: %w", err)
		}
		if l == "DONE\n" {
			return c, nil
		}
	}
}

func (c *conn) close() { c.c.Close() }

func (c *conn) login(user, pw string) error {
	l, err := c.auth(user, pw)
	if err == nil && !strings.HasPrefix(l, "OK\t") {
		err = fmt.Errorf("auth %s %w: %q", user, errFail, l)
	}
	return err
}

// auth sends one AUTH PLAIN (with c.extra) and returns the reply line.
func (c *conn) auth(user, pw string) (string, error) {
	c.id++
	c.b = c.b[:0]
	c.b = append(c.b, "AUTH\t"...)
	c.b = strconv.AppendInt(c.b, int64(c.id), 10)
	c.b = append(c.b, "\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tsecured\t"...)
	c.b = append(c.b, c.extra...)
	c.b = append(c.b, "resp="...)
	c.b = base64.StdEncoding.AppendEncode(c.b, []byte("\x00"+user+"\x00"+pw))
	c.b = append(c.b, '\n')
	if _, err := c.c.Write(c.b); err != nil {
		return "", err
	}
	l, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	f := strings.SplitN(l, "\t", 3)
	if len(f) < 2 || f[1] != strconv.Itoa(c.id) {
		return l, fmt.Errorf("unexpected reply %q", l)
	}
	return l, nil
}

// ldapTarget is the LDAP passdb the floor imitates (run.sh passes the values
// it configures for dovetail and Dovecot).
type ldapTarget struct {
	uri, passdb        string // passdb: bind or attr
	bindDN, bindPW     string // service account for the searches
	base, filter, pass string // filter: %u = login; pass: the password attribute
	lib                string // dovetail or goldap
}

// dovetailDirectory is dovetail's own LDAP passdb (directory/ldap: pooled
// connections, a synchronous request loop per connection) configured as run.sh
// configures `dovetail authd`, used in this process: the floor without the
// auth socket's hop. Pools sized for the 8-connection cells, as the daemon's.
func dovetailDirectory(t *ldapTarget) (directory.Directory, error) {
	cfg := dirldap.DefaultConfig()
	cfg.URIs = []string{t.uri}
	cfg.BindDN, cfg.BindPassword = t.bindDN, dirldap.Secret(t.bindPW)
	cfg.BaseDN, cfg.Scope, cfg.UserFilter = t.base, "one", t.filter
	cfg.Attributes.Password = t.pass
	cfg.AuthMode, cfg.DefaultScheme = dirldap.ModeBind, "SSHA"
	if t.passdb == "attr" {
		cfg.AuthMode = dirldap.ModePassword
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return dirldap.New(cfg, slog.New(slog.DiscardHandler))
}

// dirClient logs in through the shared directory (it is safe for concurrent use).
type dirClient struct{ d directory.Directory }

func (c dirClient) login(user, pw string) error {
	_, err := c.d.Authenticate(context.Background(), user, pw)
	if errors.Is(err, directory.ErrInvalidCredentials) || errors.Is(err, directory.ErrNotFound) || errors.Is(err, directory.ErrDisabled) {
		return fmt.Errorf("auth %s %w: %w", user, errFail, err)
	}
	return err
}

func (dirClient) close() {}

// ldapClient does per login what an LDAP passdb does on a cache miss.
type ldapClient struct {
	t      *ldapTarget
	search *ldap.Conn // bound as the service account
	bind   *ldap.Conn // bind mode: the user binds (nil in attr mode)
	attrs  []string
}

func dialLDAP(t *ldapTarget) (*ldapClient, error) {
	c := &ldapClient{t: t, attrs: []string{"cn"}} // Dovecot's pass_attrs = cn=user
	if t.passdb == "attr" {
		c.attrs = append(c.attrs, t.pass) // + userPassword=password
	}
	var err error
	if c.search, err = ldap.DialURL(t.uri); err != nil {
		return nil, err
	}
	if err = c.search.Bind(t.bindDN, t.bindPW); err != nil {
		c.close()
		return nil, fmt.Errorf("service bind: %w", err)
	}
	if t.passdb == "bind" {
		if c.bind, err = ldap.DialURL(t.uri); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *ldapClient) close() {
	for _, l := range []*ldap.Conn{c.search, c.bind} {
		if l != nil {
			l.Close()
		}
	}
}

func (c *ldapClient) login(user, pw string) error {
	// Size limit 2 as dovetail: a second match would be an error, not a login.
	res, err := c.search.Search(ldap.NewSearchRequest(c.t.base, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 2, 0, false,
		strings.ReplaceAll(c.t.filter, "%u", ldap.EscapeFilter(user)), c.attrs, nil))
	if err != nil {
		return fmt.Errorf("search %s: %w", user, err)
	}
	if len(res.Entries) != 1 {
		return fmt.Errorf("auth %s %w: %d entries", user, errFail, len(res.Entries))
	}
	e := res.Entries[0]
	if c.bind != nil {
		if pw == "" { // an empty password would be an unauthenticated bind
			return fmt.Errorf("auth %s %w: empty password", user, errFail)
		}
		err := c.bind.Bind(e.DN, pw)
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
			return fmt.Errorf("auth %s %w: %w", user, errFail, err)
		case err != nil:
			return fmt.Errorf("bind %s: %w", e.DN, err)
		}
		return nil
	}
	for _, v := range e.GetEqualFoldAttributeValues(c.t.pass) {
		if password.Verify(v, pw, "") == nil {
			return nil
		}
	}
	return fmt.Errorf("auth %s %w: password mismatch", user, errFail)
}

func user(i int) (string, string) { return fmt.Sprintf("u%04d", i), fmt.Sprintf("secret-%04d", i) }

func pct(v []time.Duration, p float64) time.Duration {
	k := int(p/100*float64(len(v))+0.5) - 1
	k = max(0, min(len(v)-1, k))
	return v[k]
}

func main() {
	socket := flag.String("socket", "", "unix socket of the auth service")
	addr := flag.String("addr", "", "host:port of the auth service (instead of -socket)")
	n := flag.Int("n", 10000, "requests in total")
	conns := flag.Int("c", 1, "connections (one request in flight each)")
	mode := flag.String("mode", "hit", "hit (always u0000) or miss (u(i mod users))")
	users := flag.Int("users", 1000, "number of users for -mode miss")
	check := flag.Bool("check", false, "correctness probe instead of a measurement")
	var lt ldapTarget
	flag.StringVar(&lt.uri, "ldap", "", "LDAP URI: no auth service, the client does the LDAP passdb work itself (the floor)")
	flag.StringVar(&lt.passdb, "passdb", "bind", "with -ldap: bind (search, then bind as the DN) or attr (search with the password, check {SSHA})")
	flag.StringVar(&lt.bindDN, "binddn", "cn=admin,dc=example,dc=com", "with -ldap: service account for the searches")
	flag.StringVar(&lt.bindPW, "bindpw", "adminsecret", "with -ldap: its password")
	flag.StringVar(&lt.base, "base", "ou=users,dc=example,dc=com", "with -ldap: search base (scope one level)")
	flag.StringVar(&lt.filter, "filter", "(&(cn=%u)(status=valid))", "with -ldap: search filter, %u = the escaped login")
	flag.StringVar(&lt.pass, "passattr", "userPassword", "with -ldap -passdb attr: the password attribute")
	flag.StringVar(&lt.lib, "ldapclient", "dovetail", "with -ldap: dovetail (its directory/ldap package in this process) or goldap (go-ldap's client)")
	flag.Parse()
	network, target := "unix", *socket
	if *addr != "" {
		network, target = "tcp", *addr
	}
	var dialer func() (client, error)
	switch {
	case lt.uri != "":
		if lt.passdb != "bind" && lt.passdb != "attr" {
			fmt.Fprintln(os.Stderr, "authd-bench: -passdb is bind or attr")
			os.Exit(2)
		}
		switch lt.lib {
		case "dovetail":
			d, err := dovetailDirectory(&lt)
			if err != nil {
				fmt.Fprintln(os.Stderr, "authd-bench:", err)
				os.Exit(1)
			}
			defer d.Close()
			dialer = func() (client, error) { return dirClient{d}, nil }
		case "goldap":
			dialer = func() (client, error) { return dialLDAP(&lt) }
		default:
			fmt.Fprintln(os.Stderr, "authd-bench: -ldapclient is dovetail or goldap")
			os.Exit(2)
		}
	case target != "":
		dialer = func() (client, error) { return dial(network, target) }
	default:
		fmt.Fprintln(os.Stderr, "authd-bench: -socket, -addr or -ldap is required")
		os.Exit(2)
	}
	if *check {
		if err := probe(dialer); err != nil {
			fmt.Fprintln(os.Stderr, "authd-bench: check:", err)
			os.Exit(1)
		}
		return
	}
	res, err := run(dialer, *n, *conns, *mode, *users)
	if err != nil {
		fmt.Fprintln(os.Stderr, "authd-bench:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// probe checks good/bad/disabled/unknown logins (the peer's check), with
// no-penalty like the peer so failures do not slow the measurements after it.
func probe(dialer func() (client, error)) error {
	c, err := dialer()
	if err != nil {
		return err
	}
	defer c.close()
	if ac, ok := c.(*conn); ok {
		ac.extra = "no-penalty\t"
	}
	u0, p0 := user(0)
	u1, _ := user(1)
	u999, p999 := user(999)
	for _, tc := range []struct{ u, p, want string }{
		{u0, p0, "OK"}, {u1, "wrong", "FAIL"}, {"disabled", "disabledpw", "FAIL"}, {"nosuch", "x", "FAIL"}, {u999, p999, "OK"},
	} {
		err := c.login(tc.u, tc.p)
		got := "OK"
		if errors.Is(err, errFail) {
			got = "FAIL: " + err.Error()
		} else if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  AUTH %s -> %s\n", tc.u, got)
		if !strings.HasPrefix(got, tc.want) {
			return fmt.Errorf("%s: want %s, got %s", tc.u, tc.want, got)
		}
	}
	return nil
}

type result struct {
	Requests    int     `json:"requests"`
	Connections int     `json:"connections"`
	Cache       string  `json:"cache"`
	WallS       float64 `json:"wall_s"`
	AuthsPerS   float64 `json:"auths_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	ClientCPUs  float64 `json:"client_cpu_s"` // user+system CPU of this client during the run
}

func run(dialer func() (client, error), n, nconn int, mode string, nusers int) (result, error) {
	type out struct {
		lat []time.Duration
		end time.Time
		err error
	}
	start := make(chan struct{})
	var ready sync.WaitGroup
	outs := make(chan out, nconn)
	for w := 0; w < nconn; w++ {
		ready.Add(1)
		go func(w int) {
			c, err := dialer()
			if err == nil {
				defer c.close()
				u, p := user(0)
				err = c.login(u, p) // warm-up (fills the cache in hit mode)
			}
			var creds [][2]string
			for i := w; i < n; i += nconn {
				u := 0
				if mode == "miss" {
					u = i % nusers
				}
				a, b := user(u)
				creds = append(creds, [2]string{a, b})
			}
			ready.Done()
			<-start
			if err != nil {
				outs <- out{err: err}
				return
			}
			lat := make([]time.Duration, 0, len(creds))
			for _, cr := range creds {
				t := time.Now()
				err := c.login(cr[0], cr[1])
				lat = append(lat, time.Since(t))
				if err != nil {
					outs <- out{err: err}
					return
				}
			}
			outs <- out{lat: lat, end: time.Now()}
		}(w)
	}
	ready.Wait()
	cpu0 := cpuTime()
	t0 := time.Now()
	close(start)
	var all []time.Duration
	var end time.Time
	var errs []error
	for w := 0; w < nconn; w++ {
		o := <-outs
		if o.err != nil {
			errs = append(errs, o.err)
		}
		all = append(all, o.lat...)
		if o.end.After(end) {
			end = o.end
		}
	}
	if len(errs) > 0 {
		return result{}, errors.Join(errs...)
	}
	cpu := cpuTime() - cpu0
	slices.Sort(all)
	wall := end.Sub(t0).Seconds()
	return result{
		Requests: n, Connections: nconn, Cache: mode, WallS: round(wall, 3),
		AuthsPerS: round(float64(n)/wall, 1),
		P50ms:     round(pct(all, 50).Seconds()*1e3, 3), P99ms: round(pct(all, 99).Seconds()*1e3, 3),
		ClientCPUs: round(cpu.Seconds(), 3),
	}, nil
}

// cpuTime is the process's user+system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func round(v float64, d int) float64 {
	p := 1.0
	for range d {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}
