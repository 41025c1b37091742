package store

import (
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// Backends accepted in Config.Backend.
const (
	BackendSQLite = "sqlite" // embedded, one file in the data dir (default)
	BackendRedis  = "redis"  // shared by several hosts
	BackendMemory = "memory" // lost on restart: tests and trials only
)

// Config is the top-level `store:` section. The backends are built from it by
// package storeopen (store/open), which imports them.
type Config struct {
	// Backend is sqlite (default), redis or memory.
	Backend string `yaml:"backend"`
	// Path is the SQLite file; empty means <data_dir>/state.db.
	Path string `yaml:"path"`
	// SweepInterval is how often SQLite deletes expired rows (reads ignore them
	// anyway).
	SweepInterval config.Duration `yaml:"sweep_interval"`
	// WriteBehind keeps SQLite's values, counters and sliding windows (greylisting,
	// rate limits) in memory and writes changed rows to the file at most this
	// long later, many per transaction; 0 writes every call through. A crash (not
	// a clean stop) loses at most this much of changes; another process sharing
	// the file sees changes this late.
	WriteBehind config.Duration `yaml:"write_behind"`
	// HotKeys bounds the rows write-behind keeps in memory (~250 bytes each);
	// unchanged rows beyond it are dropped and re-read when next used.
	HotKeys int         `yaml:"hot_keys"`
	Redis   RedisConfig `yaml:"redis"`
}

// RedisConfig is `store.redis:`, used when backend is redis.
type RedisConfig struct {
	// Addr is host:port of a single server; Addrs lists Redis Cluster seeds.
	// Give one of them.
	Addr     string   `yaml:"addr"`
	Addrs    []string `yaml:"addrs"`
	Username string   `yaml:"username"`
	Password Secret   `yaml:"password"`
	DB       int      `yaml:"db"`
	// Prefix namespaces every key ("dovetail:" by default).
	Prefix string `yaml:"prefix"`
	// Short timeouts make a frozen Redis fail requests fast (temporary failure,
	// or fail-open where configured) instead of stalling Postfix.
	DialTimeout  config.Duration `yaml:"dial_timeout"`
	ReadTimeout  config.Duration `yaml:"read_timeout"`
	WriteTimeout config.Duration `yaml:"write_timeout"`
	// PoolSize is the connection pool size; 0 means 10 per CPU.
	PoolSize int `yaml:"pool_size"`
}

// DefaultConfig returns the defaults: SQLite in the data dir.
func DefaultConfig() Config {
	return Config{
		Backend:       BackendSQLite,
		SweepInterval: config.Duration(time.Minute),
		WriteBehind:   config.Duration(50 * time.Millisecond),
		HotKeys:       200_000,
		Redis: RedisConfig{
			Prefix:       "dovetail:",
			DialTimeout:  config.Duration(300 * time.Millisecond),
			ReadTimeout:  config.Duration(200 * time.Millisecond),
			WriteTimeout: config.Duration(200 * time.Millisecond),
		},
	}
}

// Validate checks the backend choice and, for redis, that an address is given
// (the redis section's own fields are checked by RedisConfig.Validate).
func (c *Config) Validate() error {
	var errs []error
	switch c.Backend {
	case BackendSQLite, BackendMemory:
	case BackendRedis:
		if c.Redis.Addr == "" && len(c.Redis.Addrs) == 0 {
			errs = append(errs, config.Errorf("redis.addr", "backend redis needs redis.addr (or redis.addrs for a cluster)", "e.g. addr: 127.0.0.1:6379"))
		}
	default:
		errs = append(errs, config.Errorf("backend", "unknown store backend "+quote(c.Backend), "one of sqlite, redis, memory"))
	}
	if strings.ContainsRune(c.Path, 0) {
		errs = append(errs, config.Errorf("path", "contains a NUL byte", ""))
	}
	if c.SweepInterval < 0 || (c.SweepInterval > 0 && c.SweepInterval.D() < time.Second) {
		errs = append(errs, config.Errorf("sweep_interval", "must be at least 1s", "e.g. 1m"))
	}
	if c.WriteBehind < 0 || c.WriteBehind.D() > 10*time.Second {
		errs = append(errs, config.Errorf("write_behind", "must be between 0 (write every call through) and 10s", "e.g. 50ms: a crash loses at most this much of changes"))
	}
	if c.HotKeys < 0 {
		errs = append(errs, config.Errorf("hot_keys", "must not be negative", "e.g. 200000 (~50 MB)"))
	}
	return config.Join(errs...)
}

// Validate checks the Redis fields' own values.
func (c *RedisConfig) Validate() error {
	var errs []error
	if c.Addr != "" && len(c.Addrs) > 0 {
		errs = append(errs, config.Errorf("addrs", "give addr (one server) or addrs (cluster), not both", ""))
	}
	if c.Addr != "" {
		errs = append(errs, checkAddr("addr", c.Addr))
	}
	for _, a := range c.Addrs {
		errs = append(errs, checkAddr("addrs", a))
	}
	if c.DB < 0 || c.DB > 15 {
		errs = append(errs, config.Errorf("db", "must be 0..15", "Redis has 16 databases by default"))
	}
	if c.DB != 0 && len(c.Addrs) > 0 {
		errs = append(errs, config.Errorf("db", "Redis Cluster has only database 0", ""))
	}
	for _, d := range []struct {
		name string
		v    config.Duration
	}{{"dial_timeout", c.DialTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}} {
		if d.v < 0 || d.v.D() > time.Minute {
			errs = append(errs, config.Errorf(d.name, "must be between 0 (default) and 1m", "e.g. 200ms: a frozen Redis should fail requests fast"))
		}
	}
	if c.PoolSize < 0 || c.PoolSize > 10000 {
		errs = append(errs, config.Errorf("pool_size", "must be 0 (default) .. 10000", ""))
	}
	if len(c.Prefix) > 256 {
		errs = append(errs, config.Errorf("prefix", "longer than 256 bytes", ""))
	}
	return config.Join(errs...)
}

// AddrList is Addr or Addrs as one list.
func (c *RedisConfig) AddrList() []string {
	if c.Addr != "" {
		return []string{c.Addr}
	}
	return c.Addrs
}

func checkAddr(field, a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" {
		return config.Errorf(field, "invalid address "+quote(a), "host:port, e.g. 127.0.0.1:6379")
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }

// Secret is a password in the config: it never appears in logs, %v output or a
// printed config. Reveal returns the value for the client that needs it.
type Secret string

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// String hides the value.
func (Secret) String() string { return "***" }

// GoString hides the value from %#v.
func (Secret) GoString() string { return `"***"` }

// LogValue hides the value from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue("***") }

// MarshalYAML hides the value when a config is printed.
func (Secret) MarshalYAML() (any, error) { return "***", nil }
