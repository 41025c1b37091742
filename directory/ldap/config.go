package ldap

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/dovetail-mail/dovetail/directory/password"
	"github.com/dovetail-mail/dovetail/internal/config"
)

// Secret is a password in the config: it never appears in logs or %v output.
type Secret string

// String hides the value.
func (Secret) String() string { return "***" }

// GoString hides the value from %#v.
func (Secret) GoString() string { return `"***"` }

// LogValue hides the value from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue("***") }

// MarshalYAML hides the value when a config is printed.
func (Secret) MarshalYAML() (any, error) { return "***", nil }

// Auth modes.
const (
	// ModeBind verifies passwords with a simple bind as the user's DN: the LDAP
	// server checks any hash it stores, dovetail never reads userPassword.
	ModeBind = "bind"
	// ModePassword reads the password attribute with the service account and
	// verifies the {SCHEME} itself; it can also serve CRAM-MD5/SCRAM.
	ModePassword = "password"
)

// Attributes maps directory.User fields to LDAP attribute names; an empty name
// means "not in this directory".
type Attributes struct {
	Login    string `yaml:"login"`
	Mail     string `yaml:"mail"`
	Home     string `yaml:"home"`
	UID      string `yaml:"uid"`
	GID      string `yaml:"gid"`
	Status   string `yaml:"status"`
	Quota    string `yaml:"quota"`
	Password string `yaml:"password"`
	// AllowNets, if set, names an attribute holding the networks the user may
	// log in from (Dovecot's allow_nets passdb field: addresses, CIDRs,
	// "local"; authd refuses a login from elsewhere). Empty: not used.
	AllowNets string `yaml:"allow_nets"`
}

// Config is the `directory.ldap` section.
type Config struct {
	// URIs are tried in order (ldap://, ldaps:// or ldapi://); the first that
	// answers is used until it fails.
	URIs []string `yaml:"uris"`
	// StartTLS upgrades ldap:// connections.
	StartTLS bool `yaml:"starttls"`
	// TLS sets the CA, client certificate and server name of ldaps:// and
	// StartTLS connections; it has no Validate of its own because whether it
	// applies depends on URIs and StartTLS, checked here.
	TLS TLSConfig `yaml:"tls"`
	// BindDN / BindPassword is the service account used for searches.
	BindDN       string `yaml:"bind_dn"`
	BindPassword Secret `yaml:"bind_password"`
	// BaseDN and Scope (sub, one, base) of user searches.
	BaseDN string `yaml:"base_dn"`
	Scope  string `yaml:"scope"`
	// UserFilter finds a user by login (%u login, %n local part, %d domain; every
	// value is escaped). Used for lookups and, unless PassFilter is set, for
	// authentication, e.g. (&(cn=%u)(status=valid)).
	UserFilter string `yaml:"user_filter"`
	// PassFilter, if set, is used for authentication instead of UserFilter.
	PassFilter string `yaml:"pass_filter"`
	// AddressFilter finds the user owning an address, e.g. (mail=%u).
	AddressFilter string `yaml:"address_filter"`
	// Attributes maps user fields to attribute names.
	Attributes Attributes `yaml:"attributes"`
	// ValidStatus lists the status values of an enabled user (case-insensitive);
	// a user without the status attribute is enabled.
	ValidStatus []string `yaml:"valid_status"`
	// AuthMode is "bind" (auth bind as the user) or "password" (read and verify
	// the password attribute).
	AuthMode string `yaml:"auth_mode"`
	// DefaultScheme applies to password attributes without {SCHEME}.
	DefaultScheme string `yaml:"default_scheme"`
	// PoolSize bounds the service connections (searches); AuthPoolSize the
	// separate connections used for auth binds.
	PoolSize     int `yaml:"pool_size"`
	AuthPoolSize int `yaml:"auth_pool_size"`
	// DialTimeout bounds connecting (per URI); Timeout every request.
	DialTimeout config.Duration `yaml:"dial_timeout"`
	Timeout     config.Duration `yaml:"timeout"`
}

// DefaultConfig returns the defaults (the test/seed layout's attribute names).
func DefaultConfig() Config {
	return Config{
		Scope:         "sub",
		UserFilter:    "(&(objectClass=posixAccount)(cn=%u))",
		AddressFilter: "(&(objectClass=posixAccount)(mail=%u))",
		Attributes: Attributes{
			Login: "cn", Mail: "mail", Home: "homeDirectory", UID: "uidNumber", GID: "gidNumber",
			Status: "status", Quota: "mailQuota", Password: "userPassword",
		},
		ValidStatus:   []string{"valid"},
		AuthMode:      ModeBind,
		DefaultScheme: "CRYPT",
		PoolSize:      8,
		AuthPoolSize:  4,
		DialTimeout:   config.Duration(3 * time.Second),
		Timeout:       config.Duration(5 * time.Second),
	}
}

// Unused reports whether the section was left at its defaults without a server
// (the static backend is in use); Validate accepts that.
func (c *Config) Unused() bool { return len(c.URIs) == 0 && c.BaseDN == "" }

// Validate checks the section's own fields.
func (c *Config) Validate() error {
	if c.Unused() {
		return nil
	}
	var errs []error
	if len(c.URIs) == 0 {
		errs = append(errs, config.Errorf("uris", "at least one LDAP URI is required", "e.g. [ldap://127.0.0.1:389]"))
	}
	for i, u := range c.URIs {
		if _, _, err := splitURI(u); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("uris[%d]", i), err.Error(), "ldap://host:389, ldaps://host:636 or ldapi://%2Frun%2Fslapd%2Fldapi"))
		}
	}
	errs = append(errs, c.validateTLS()...)
	if c.BaseDN == "" {
		errs = append(errs, config.Errorf("base_dn", "is required", "e.g. ou=people,dc=example,dc=com"))
	} else if _, err := goldap.ParseDN(c.BaseDN); err != nil {
		errs = append(errs, config.Errorf("base_dn", err.Error(), ""))
	}
	if c.BindDN != "" && c.BindPassword == "" {
		errs = append(errs, config.Errorf("bind_password", "is required with bind_dn", ""))
	}
	if _, ok := scopes[c.Scope]; !ok {
		errs = append(errs, config.Errorf("scope", fmt.Sprintf("unknown scope %q", c.Scope), "sub, one or base"))
	}
	for name, f := range map[string]string{"user_filter": c.UserFilter, "pass_filter": c.PassFilter, "address_filter": c.AddressFilter} {
		if f == "" && name == "pass_filter" {
			continue
		}
		if err := checkFilter(f); err != nil {
			errs = append(errs, config.Errorf(name, err.Error(), "e.g. (&(cn=%u)(status=valid))"))
		}
	}
	switch c.AuthMode {
	case ModeBind:
	case ModePassword:
		if c.Attributes.Password == "" {
			errs = append(errs, config.Errorf("attributes.password", "is required with auth_mode: password", "usually userPassword"))
		}
		if c.BindDN == "" {
			errs = append(errs, config.Errorf("bind_dn", "auth_mode: password needs a service account that may read the password attribute", ""))
		}
	default:
		errs = append(errs, config.Errorf("auth_mode", fmt.Sprintf("unknown mode %q", c.AuthMode), "bind or password"))
	}
	if c.DefaultScheme != "" {
		if _, err := password.Parse("{"+c.DefaultScheme+"}x", ""); errors.Is(err, password.ErrUnknownScheme) {
			errs = append(errs, config.Errorf("default_scheme", fmt.Sprintf("unknown scheme %q", c.DefaultScheme), "e.g. CRYPT, SSHA"))
		}
	}
	if c.Attributes.Login == "" {
		errs = append(errs, config.Errorf("attributes.login", "is required", "e.g. cn or uid"))
	}
	if c.PoolSize < 1 || c.PoolSize > 256 {
		errs = append(errs, config.Errorf("pool_size", "must be 1..256", ""))
	}
	if c.AuthPoolSize < 1 || c.AuthPoolSize > 256 {
		errs = append(errs, config.Errorf("auth_pool_size", "must be 1..256", ""))
	}
	if c.DialTimeout <= 0 || c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "dial_timeout and timeout must be positive", "e.g. 3s"))
	}
	return config.Join(errs...)
}

// validateTLS checks that the tls settings load and that every URI uses TLS
// when they are given: on a plain ldap:// URI they would do nothing, silently,
// and an admin who configured a CA expects the binds to be encrypted.
func (c *Config) validateTLS() []error {
	if !c.TLS.set() {
		return nil
	}
	var errs []error
	tlsURIs := 0
	for i, u := range c.URIs {
		scheme, _, err := splitURI(u)
		switch {
		case err != nil: // reported with the URIs
		case scheme == "ldaps" || scheme == "ldap" && c.StartTLS:
			tlsURIs++
		case scheme == "ldap":
			errs = append(errs, config.Errorf(fmt.Sprintf("uris[%d]", i),
				fmt.Sprintf("%s is plain LDAP: the tls settings do not apply to it and binds would go unencrypted", u),
				"use ldaps://, or set starttls: true"))
		}
	}
	if tlsURIs == 0 && len(errs) == 0 && len(c.URIs) > 0 {
		errs = append(errs, config.Errorf("tls", "is set but no URI uses TLS (ldapi:// is a local socket)", "use ldaps:// or ldap:// with starttls: true, or remove the tls settings"))
	}
	if _, err := c.TLS.clientConfig(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

var scopes = map[string]int{"sub": goldap.ScopeWholeSubtree, "one": goldap.ScopeSingleLevel, "base": goldap.ScopeBaseObject}

// checkFilter makes sure a template compiles once its variables are filled in.
func checkFilter(tmpl string) error {
	if tmpl == "" {
		return errors.New("is required")
	}
	// Anything else after % would reach the server as literal text (Dovecot's
	// %Lu or %{domain} are not expanded here): the filter would then match
	// nobody and every user be "not found", a permanent bounce for all mail.
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '%' {
			continue
		}
		if i+1 == len(tmpl) || !strings.ContainsRune("und%", rune(tmpl[i+1])) {
			return fmt.Errorf("unknown variable %q: only %%u, %%n, %%d (escaped values) and %%%% (a literal %%) are expanded", tmpl[i:min(i+2, len(tmpl))])
		}
		i++
	}
	if !strings.Contains(tmpl, "%u") && !strings.Contains(tmpl, "%n") {
		return errors.New("must contain %u or %n")
	}
	if _, err := goldap.CompileFilter(expandFilter(tmpl, "user@example.com")); err != nil {
		return fmt.Errorf("invalid filter: %v", err)
	}
	return nil
}

// expandFilter fills %u (login), %n (local part), %d (domain) and %% with
// escaped values, so a login such as "*)(cn=*" matches literally.
func expandFilter(tmpl, login string) string {
	local, domain, _ := strings.Cut(login, "@")
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '%' || i+1 == len(tmpl) {
			b.WriteByte(tmpl[i])
			continue
		}
		i++
		switch tmpl[i] {
		case 'u':
			b.WriteString(goldap.EscapeFilter(login))
		case 'n':
			b.WriteString(goldap.EscapeFilter(local))
		case 'd':
			b.WriteString(goldap.EscapeFilter(domain))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(tmpl[i])
		}
	}
	return b.String()
}
