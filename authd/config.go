package authd

import (
	"fmt"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// Config is the `authd` section.
type Config struct {
	// Listen is where Postfix connects (smtpd_sasl_path): a unix socket such as
	// unix:/var/spool/postfix/private/dovetail-auth, or host:port (inet:host:port
	// in Postfix).
	Listen config.Listener `yaml:"listen"`
	// Mechanisms to offer. CRAM-MD5 and SCRAM-* are only offered when the
	// directory can return stored secrets (static users, LDAP auth_mode: password)
	// and then only work for users whose stored password can serve them.
	Mechanisms []string `yaml:"mechanisms"`
	// CacheTTL / CacheNegativeTTL: how long a PLAIN/LOGIN success / failure is
	// remembered; CacheSize bounds the cache (0 disables it).
	CacheTTL         config.Duration `yaml:"cache_ttl"`
	CacheNegativeTTL config.Duration `yaml:"cache_negative_ttl"`
	CacheSize        config.Size     `yaml:"cache_size"`
	// FailureDelay is the first delay of a FAIL for a remote IP + login; it doubles
	// with every further failure up to FailureDelayMax (0 disables the penalty).
	// It counts from the client's last step, so it includes the password check
	// and a FAIL takes as long for an unknown user as for a wrong password.
	FailureDelay    config.Duration `yaml:"failure_delay"`
	FailureDelayMax config.Duration `yaml:"failure_delay_max"`
	// OnUnavailable says what a client sees when the directory is down:
	// "disconnect" (Postfix answers 454 4.7.0, a temporary failure) or "fail"
	// (FAIL code=temp_fail, which Postfix turns into 535 like any FAIL).
	OnUnavailable string `yaml:"on_unavailable"`
	// LookupTimeout bounds one directory call (below Postfix's 10 s).
	LookupTimeout config.Duration `yaml:"lookup_timeout"`
	// RequestTimeout drops requests waiting for a CONT that never comes (Postfix
	// does not tell the server when an SMTP client aborts with "*").
	RequestTimeout config.Duration `yaml:"request_timeout"`
	// IdleTimeout closes connections without any traffic; 0 (the default, as
	// Dovecot) never does. Postfix opens its connection when an smtpd process
	// starts and keeps it while the process serves clients that never
	// authenticate; over TCP its first AUTH after we closed the connection
	// writes into the dead socket, reads EOF and answers 454, so a timeout
	// here costs a legitimate login a temporary failure.
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// MaxConnections bounds concurrent client connections; MaxPending the
	// unfinished requests on one connection.
	MaxConnections int `yaml:"max_connections"`
	MaxPending     int `yaml:"max_pending"`
	// Hostname goes into CRAM-MD5 challenges (default: the system host name).
	Hostname string `yaml:"hostname"`
}

// DefaultConfig returns the defaults (cache as the seeds: 30 min / 10 MB).
func DefaultConfig() Config {
	return Config{
		Listen:           config.Listener{Address: "127.0.0.1:12345"},
		Mechanisms:       []string{mechPlain, mechLogin},
		CacheTTL:         config.Duration(30 * time.Minute),
		CacheNegativeTTL: config.Duration(time.Minute),
		CacheSize:        config.Size(10 << 20),
		FailureDelay:     config.Duration(250 * time.Millisecond),
		FailureDelayMax:  config.Duration(4 * time.Second),
		OnUnavailable:    "disconnect",
		LookupTimeout:    config.Duration(5 * time.Second),
		RequestTimeout:   config.Duration(150 * time.Second),
		MaxConnections:   1024,
		MaxPending:       64,
	}
}

// Validate checks the section's own fields.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen.Address == "" {
		errs = append(errs, config.Errorf("listen.address", "is required", "unix:/var/spool/postfix/private/dovetail-auth or 127.0.0.1:12345"))
	}
	if len(c.Mechanisms) == 0 {
		errs = append(errs, config.Errorf("mechanisms", "offer at least one mechanism", "PLAIN, LOGIN"))
	}
	for i, m := range c.Mechanisms {
		if _, ok := mechFlags[strings.ToUpper(m)]; !ok {
			errs = append(errs, config.Errorf(fmt.Sprintf("mechanisms[%d]", i), fmt.Sprintf("unknown mechanism %q", m),
				"PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256"))
		}
	}
	if c.CacheTTL < 0 || c.CacheNegativeTTL < 0 || c.CacheSize < 0 {
		errs = append(errs, config.Errorf("cache_ttl", "cache settings must not be negative", "cache_size: 0 disables the cache"))
	}
	if c.FailureDelay < 0 || c.FailureDelayMax < c.FailureDelay {
		errs = append(errs, config.Errorf("failure_delay", "must be >= 0 and <= failure_delay_max", "e.g. 250ms and 4s"))
	}
	// Postfix gives the auth server 10 s per step; a longer delay would turn a
	// failure into a lost connection (454) instead of a 535.
	if c.FailureDelayMax.D()+c.LookupTimeout.D() > 10*time.Second {
		errs = append(errs, config.Errorf("failure_delay_max", "failure_delay_max + lookup_timeout must stay below Postfix's 10 s auth timeout", "e.g. 4s and 5s"))
	}
	if c.LookupTimeout <= 0 {
		errs = append(errs, config.Errorf("lookup_timeout", "must be positive", "e.g. 5s"))
	}
	switch c.OnUnavailable {
	case "disconnect", "fail":
	default:
		errs = append(errs, config.Errorf("on_unavailable", fmt.Sprintf("unknown value %q", c.OnUnavailable), "disconnect (Postfix: 454) or fail (Postfix: 535)"))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, config.Errorf("request_timeout", "must be positive", "e.g. 150s"))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, config.Errorf("idle_timeout", "must not be negative", "0 keeps idle connections open"))
	}
	if c.MaxConnections < 1 || c.MaxPending < 1 {
		errs = append(errs, config.Errorf("max_connections", "max_connections and max_pending must be at least 1", ""))
	}
	return config.Join(errs...)
}
