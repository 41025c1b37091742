// Package ldap is a directory backed by an LDAP server (OpenLDAP, AD, …) through
// go-ldap: a bounded pool of service-bound connections for searches, a separate
// small pool for auth binds, several URIs with failover, filter templates whose
// values are always escaped, and two auth modes (see ModeBind, ModePassword).
//
// Errors: a network problem or timeout wraps directory.ErrUnavailable, and so
// does a TLS certificate that fails verification (the dependency is unusable,
// as if down; the log says it was the certificate); no entry
// is directory.ErrNotFound; a status outside ValidStatus is directory.ErrDisabled
// for Authenticate and Enabled=false for lookups.
package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/directory/password"
	"github.com/dovetail-mail/dovetail/internal/config"
)

// Directory is the LDAP directory. In password mode New returns a value that
// also implements directory.SecretReader; in bind mode it cannot read passwords.
type Directory struct {
	cfg       Config
	log       *slog.Logger
	scope     int
	attrs     []string // user attributes for lookups (without the password)
	authAttrs []string // what authentication needs: login and status
	search    *pool
	auth      *pool // auth-bind connections (bind mode only)

	logMu   sync.Mutex
	lastLog map[string]time.Time
}

// passwordDirectory adds SecretReader in password mode.
type passwordDirectory struct{ *Directory }

var (
	_ directory.Directory    = (*Directory)(nil)
	_ directory.SecretReader = passwordDirectory{}
)

// New validates cfg and builds the directory. It does not connect: connections
// are made on first use, so dovetail starts even while LDAP is down.
func New(cfg Config, log *slog.Logger) (directory.Directory, error) {
	if cfg.Unused() {
		return nil, fmt.Errorf("directory.ldap: uris and base_dn are required")
	}
	if err := config.Validate("directory.ldap", &cfg); err != nil {
		return nil, err
	}
	d, err := newDirectory(cfg, log)
	if err != nil {
		return nil, err
	}
	if cfg.AuthMode == ModePassword {
		return passwordDirectory{d}, nil
	}
	return d, nil
}

func newDirectory(cfg Config, log *slog.Logger) (*Directory, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Directory{cfg: cfg, log: log, scope: scopes[cfg.Scope], lastLog: map[string]time.Time{}}
	a := cfg.Attributes
	for _, n := range []string{a.Login, a.Mail, a.Home, a.UID, a.GID, a.Status, a.Quota} {
		if n != "" {
			d.attrs = append(d.attrs, n)
		}
	}
	// Authentication fetches only what it needs (fewer attributes = less work
	// for the server on every uncached login).
	for _, n := range []string{a.Login, a.Status, a.AllowNets} {
		if n != "" {
			d.authAttrs = append(d.authAttrs, n)
		}
	}
	if a.AllowNets != "" {
		d.attrs = append(d.attrs, a.AllowNets)
	}
	serviceBind := func(ctx context.Context, c *lconn, timeout time.Duration) error {
		if cfg.BindDN == "" {
			return nil // anonymous searches
		}
		return c.bind(ctx, cfg.BindDN, string(cfg.BindPassword), timeout)
	}
	var tlsCfg *tls.Config
	if cfg.TLS.set() {
		var err error
		if tlsCfg, err = cfg.TLS.clientConfig(); err != nil {
			return nil, config.Prefix("directory.ldap", err)
		}
	}
	cur := new(atomic.Int32)
	d.search = newPool("search", cfg.PoolSize, &d.cfg, tlsCfg, cur, serviceBind, d.dialFailed)
	if cfg.AuthMode == ModeBind {
		d.auth = newPool("auth-bind", cfg.AuthPoolSize, &d.cfg, tlsCfg, cur, nil, d.dialFailed)
	}
	return d, nil
}

// dialFailed logs connection failures at most every 10 s per URI: during an
// outage every request fails the same way.
func (d *Directory) dialFailed(uri string, err error) {
	d.logMu.Lock()
	now := time.Now()
	due := now.Sub(d.lastLog[uri]) > 10*time.Second
	if due {
		d.lastLog[uri] = now
	}
	d.logMu.Unlock()
	if !due {
		return
	}
	msg := "LDAP connection failed"
	if why := certProblem(err); why != "" {
		msg = why
	}
	d.log.Warn(msg, "uri", uri, "err", err)
}

// Close closes idle connections; in-flight requests finish on theirs.
func (d *Directory) Close() error {
	d.search.close()
	if d.auth != nil {
		d.auth.close()
	}
	return nil
}

// timeout returns the per-request timeout, shortened to ctx's deadline.
func (d *Directory) timeout(ctx context.Context) (time.Duration, error) {
	t := d.cfg.Timeout.D()
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return 0, fmt.Errorf("%w: %w", directory.ErrUnavailable, context.DeadlineExceeded)
		}
		t = min(t, left)
	}
	return t, nil
}

// find runs filter tmpl for value and returns the single entry with attrs.
func (d *Directory) find(ctx context.Context, tmpl, value string, attrs []string) (*goldap.Entry, error) {
	if value == "" || len(value) > 512 || strings.ContainsRune(value, 0) {
		return nil, fmt.Errorf("ldap: invalid login: %w", directory.ErrNotFound)
	}
	filter := expandFilter(tmpl, value)
	compiled, err := goldap.CompileFilter(filter)
	if err != nil {
		return nil, fmt.Errorf("%w: ldap filter %s: %w", directory.ErrUnavailable, filter, err)
	}
	for attempt := 0; ; attempt++ {
		t, err := d.timeout(ctx)
		if err != nil {
			return nil, err
		}
		c, reused, err := d.search.get(ctx)
		if err != nil {
			return nil, err
		}
		entries, err := c.search(ctx, d.cfg.BaseDN, d.scope, compiled, attrs, 2, t)
		broken := isNetErr(err)
		d.search.failed(ctx, c, err)
		// A cancelled request costs only its own connection (roundTrip closed
		// it); the idle ones are not suspect as after a network error.
		d.search.put(c, broken && ctx.Err() == nil)
		if broken && reused && attempt == 0 && ctx.Err() == nil {
			continue // a pooled connection went stale (server restarted): once more on a fresh one
		}
		switch {
		case broken:
			return nil, fmt.Errorf("%w: ldap search: %w", directory.ErrUnavailable, err)
		case goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) || (err == nil && len(entries) > 1):
			// Dovecot treats this as an internal error too: the filter is not unique.
			d.log.Error("LDAP filter matched several entries", "filter", filter)
			return nil, fmt.Errorf("%w: ldap: filter %s matched several entries", directory.ErrUnavailable, filter)
		case goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject):
			// A subtree search only fails so when base_dn itself is missing (a
			// typo, a restore in progress). As in Dovecot that is a server
			// problem, not "no such user": ErrNotFound would bounce every
			// message and reject every login permanently.
			return nil, fmt.Errorf("%w: ldap: search base %s does not exist: %w", directory.ErrUnavailable, d.cfg.BaseDN, err)
		case err != nil:
			// Anything unexpected (ACLs, schema) is temporary, never a permanent "no such user".
			return nil, fmt.Errorf("%w: ldap search: %w", directory.ErrUnavailable, err)
		case len(entries) == 0:
			return nil, fmt.Errorf("ldap: %q: %w", value, directory.ErrNotFound)
		}
		return entries[0], nil
	}
}

// user maps an entry to a directory.User.
func (d *Directory) user(e *goldap.Entry, login string) *directory.User {
	a := d.cfg.Attributes
	u := &directory.User{Login: login, Enabled: true, Attrs: map[string][]string{"dn": {e.DN}}}
	for _, at := range e.Attributes {
		if !strings.EqualFold(at.Name, a.Password) {
			u.Attrs[at.Name] = at.Values
		}
	}
	if a.AllowNets != "" {
		if v := e.GetEqualFoldAttributeValues(a.AllowNets); len(v) > 0 {
			// The passdb field name authd reads, as one comma-separated list:
			// authd takes each value of the field as a restriction of its own
			// (all must admit the client), but several values of one
			// attribute are alternatives (one network per value).
			u.Attrs["allow_nets"] = []string{strings.Join(v, ",")}
		}
	}
	if v := e.GetEqualFoldAttributeValue(a.Login); a.Login != "" && v != "" {
		u.Login = v // canonical spelling from the directory, as Dovecot's user=%{ldap:cn}
	}
	if a.Mail != "" {
		u.Addresses = e.GetEqualFoldAttributeValues(a.Mail)
	}
	if a.Home != "" {
		u.Home = e.GetEqualFoldAttributeValue(a.Home)
	}
	u.UID = d.intAttr(e, a.UID)
	u.GID = d.intAttr(e, a.GID)
	if a.Quota != "" {
		if v := e.GetEqualFoldAttributeValue(a.Quota); v != "" {
			if q, err := config.ParseSize(v); err == nil {
				u.Quota = q
			}
		}
	}
	if a.Status != "" {
		if v := e.GetEqualFoldAttributeValue(a.Status); v != "" {
			u.Enabled = false
			for _, ok := range d.cfg.ValidStatus {
				if strings.EqualFold(v, ok) {
					u.Enabled = true
				}
			}
		}
	}
	return u
}

func (d *Directory) intAttr(e *goldap.Entry, name string) int {
	if name == "" {
		return 0
	}
	v := e.GetEqualFoldAttributeValue(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		d.log.Warn("LDAP attribute is not a number", "dn", e.DN, "attribute", name, "value", v)
		return 0
	}
	return n
}

// LookupLogin implements directory.Lookup.
func (d *Directory) LookupLogin(ctx context.Context, login string) (*directory.User, error) {
	e, err := d.find(ctx, d.cfg.UserFilter, login, d.attrs)
	if err != nil {
		return nil, err
	}
	return d.user(e, login), nil
}

// LookupAddress implements directory.Lookup.
func (d *Directory) LookupAddress(ctx context.Context, addr string) (*directory.User, error) {
	e, err := d.find(ctx, d.cfg.AddressFilter, addr, d.attrs)
	if err != nil {
		return nil, err
	}
	return d.user(e, addr), nil
}

func (d *Directory) passFilter() string {
	if d.cfg.PassFilter != "" {
		return d.cfg.PassFilter
	}
	return d.cfg.UserFilter
}

// Authenticate implements directory.Authenticator.
func (d *Directory) Authenticate(ctx context.Context, login, pw string) (*directory.User, error) {
	if pw == "" {
		// An empty password would be an unauthenticated bind (RFC 4513 §5.1.2),
		// which servers accept: never let it through.
		return nil, fmt.Errorf("ldap: empty password: %w", directory.ErrInvalidCredentials)
	}
	withPassword := d.cfg.AuthMode == ModePassword
	attrs := d.authAttrs
	if withPassword {
		attrs = append(attrs[:len(attrs):len(attrs)], d.cfg.Attributes.Password)
	}
	e, err := d.find(ctx, d.passFilter(), login, attrs)
	if err != nil {
		return nil, err
	}
	u := d.user(e, login)
	if withPassword {
		err = d.verifyAttr(ctx, e, pw)
	} else {
		err = d.bindAs(ctx, e.DN, pw)
	}
	if err != nil {
		return nil, err
	}
	if !u.Enabled {
		return nil, fmt.Errorf("ldap: %q: %w", login, directory.ErrDisabled)
	}
	return u, nil
}

func (d *Directory) verifyAttr(ctx context.Context, e *goldap.Entry, pw string) error {
	vals := e.GetEqualFoldAttributeValues(d.cfg.Attributes.Password)
	if len(vals) == 0 {
		d.log.Warn("LDAP entry has no readable password attribute (check the ACL for bind_dn)", "dn", e.DN, "attribute", d.cfg.Attributes.Password)
	}
	for _, v := range vals {
		err := password.VerifyContext(ctx, v, pw, d.cfg.DefaultScheme)
		if err == nil {
			return nil
		}
		if password.NotChecked(err) {
			// No time was left to check the password (too many at once).
			return fmt.Errorf("%w: ldap: %s: %w", directory.ErrUnavailable, e.DN, err)
		}
		if !errors.Is(err, password.ErrMismatch) {
			d.log.Warn("stored password unusable", "dn", e.DN, "err", err)
		}
	}
	return fmt.Errorf("ldap: %s: %w", e.DN, directory.ErrInvalidCredentials)
}

// bindAs verifies pw with a simple bind as dn on an auth-pool connection.
func (d *Directory) bindAs(ctx context.Context, dn, pw string) error {
	for attempt := 0; ; attempt++ {
		t, err := d.timeout(ctx)
		if err != nil {
			return err
		}
		c, reused, err := d.auth.get(ctx)
		if err != nil {
			return err
		}
		err = c.bind(ctx, dn, pw, t)
		broken := isNetErr(err)
		d.auth.failed(ctx, c, err)
		d.auth.put(c, broken && ctx.Err() == nil)
		switch {
		case err == nil:
			return nil
		case broken && reused && attempt == 0 && ctx.Err() == nil:
			continue
		case broken:
			return fmt.Errorf("%w: ldap bind: %w", directory.ErrUnavailable, err)
		case goldap.IsErrorAnyOf(err, goldap.LDAPResultInvalidCredentials, goldap.ErrorEmptyPassword,
			goldap.LDAPResultInappropriateAuthentication, goldap.LDAPResultNoSuchObject):
			return fmt.Errorf("ldap: bind %s: %w", dn, directory.ErrInvalidCredentials)
		default:
			return fmt.Errorf("%w: ldap bind: %w", directory.ErrUnavailable, err)
		}
	}
}

// StoredPassword implements directory.SecretReader (password mode only).
func (p passwordDirectory) StoredPassword(ctx context.Context, login string) (string, string, *directory.User, error) {
	e, err := p.find(ctx, p.passFilter(), login, append(p.attrs[:len(p.attrs):len(p.attrs)], p.cfg.Attributes.Password))
	if err != nil {
		return "", "", nil, err
	}
	u := p.user(e, login)
	v := e.GetEqualFoldAttributeValue(p.cfg.Attributes.Password)
	if v == "" {
		return "", "", u, fmt.Errorf("ldap: %s has no password: %w", e.DN, directory.ErrInvalidCredentials)
	}
	scheme, data := p.cfg.DefaultScheme, v
	if strings.HasPrefix(v, "{") {
		if end := strings.IndexByte(v, '}'); end > 0 {
			scheme, data = v[1:end], v[end+1:]
		}
	}
	return scheme, data, u, nil
}
