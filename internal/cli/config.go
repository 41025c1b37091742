package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// Config is the whole configuration file: global settings plus one section per
// component. Each section's type, defaults and Validate live in its package.
type Config struct {
	// DataDir holds SQLite state, the quarantine and the default users file.
	DataDir string `yaml:"data_dir"`
	// Daemons lists what `dovetail serve` runs.
	Daemons       []string        `yaml:"daemons"`
	Log           LogConfig       `yaml:"log"`
	Metrics       MetricsConfig   `yaml:"metrics"`
	ShutdownGrace config.Duration `yaml:"shutdown_grace"`
	Runtime       RuntimeConfig   `yaml:"runtime"`

	Sections `yaml:",inline"`

	// embedded marks the built-in default (no config file), the only
	// configuration that may serve the demo users.
	embedded bool
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// MetricsConfig says where /metrics, /healthz and /readyz are served.
type MetricsConfig struct {
	Listen string `yaml:"listen"` // host:port; empty disables
}

// Validate checks the address the way net.Listen will read it.
func (m *MetricsConfig) Validate() error {
	if m.Listen == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(m.Listen)
	if err != nil {
		return config.Errorf("listen", fmt.Sprintf("%q is not host:port", m.Listen), `e.g. 127.0.0.1:9180, or "" to disable`)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return config.Errorf("listen", fmt.Sprintf("port %q is not a number from 0 to 65535", port), "e.g. 127.0.0.1:9180")
	}
	return nil
}

// RuntimeConfig tunes Go's garbage collector (daemon.TuneGC); GOGC and
// GOMEMLIMIT in the environment override it.
type RuntimeConfig struct {
	GCPercent   int         `yaml:"gc_percent"`   // GOGC; -1 = off
	MemoryLimit config.Size `yaml:"memory_limit"` // GOMEMLIMIT; 0 = none
}

// Validate checks the collector settings.
func (r *RuntimeConfig) Validate() error {
	var errs []error
	if r.GCPercent < 1 && r.GCPercent != -1 {
		errs = append(errs, config.Errorf("gc_percent", fmt.Sprintf("%d is not a GC target", r.GCPercent), "a percentage above 0 (Go's default is 100), or -1 for off"))
	}
	if r.MemoryLimit < 0 {
		errs = append(errs, config.Errorf("memory_limit", "must not be negative", "0 for no limit, or a size such as 1GB"))
	}
	return config.Join(errs...)
}

// knownDaemons are the names `daemons:` accepts, in start order.
var knownDaemons = []string{"authd", "policyd", "milter", "lmtpd"}

// DefaultConfig is the embedded default: every daemon on loopback, a users file
// and SQLite state under the data dir; no LDAP or Redis needed.
func DefaultConfig() *Config {
	c := &Config{
		DataDir:       defaultDataDir(),
		Daemons:       slices.Clone(knownDaemons),
		Log:           LogConfig{Level: "info", Format: "text"},
		Metrics:       MetricsConfig{Listen: "127.0.0.1:9180"},
		ShutdownGrace: config.Duration(10e9),
		Runtime:       RuntimeConfig{GCPercent: daemon.DefaultGCPercent},
	}
	c.Sections = defaultSections()
	return c
}

func defaultDataDir() string {
	if d := os.Getenv("DOVETAIL_DATA_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/dovetail"
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".local", "state", "dovetail")
	}
	return "dovetail-data"
}

// Validate checks the global settings; sections validate themselves.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, config.Errorf("data_dir", "must not be empty", "e.g. /var/lib/dovetail"))
	}
	if len(c.Daemons) == 0 {
		errs = append(errs, config.Errorf("daemons", "lists no daemon", "e.g. [authd, policyd, milter, lmtpd]; leave the key out for all of them"))
	}
	if c.ShutdownGrace <= 0 {
		// The runtime would take 10s instead, which is not what the file says.
		errs = append(errs, config.Errorf("shutdown_grace", fmt.Sprintf("%s is not a grace period", c.ShutdownGrace), "a positive duration such as 10s"))
	}
	errs = append(errs, c.checkUsersFile(), c.checkFiles(), c.checkListeners())
	seen := map[string]bool{}
	for i, d := range c.Daemons {
		if !slices.Contains(knownDaemons, d) {
			errs = append(errs, config.Errorf(fmt.Sprintf("daemons[%d]", i), fmt.Sprintf("unknown daemon %q", d), "known: "+strings.Join(knownDaemons, ", ")))
		}
		if seen[d] {
			errs = append(errs, config.Errorf(fmt.Sprintf("daemons[%d]", i), fmt.Sprintf("%q listed twice", d), ""))
		}
		seen[d] = true
	}
	return config.Join(errs...)
}

// Validate checks the log settings.
func (l *LogConfig) Validate() error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, config.Errorf("level", fmt.Sprintf("unknown level %q", l.Level), "one of debug, info, warn, error"))
	}
	switch l.Format {
	case "text", "json":
	default:
		errs = append(errs, config.Errorf("format", fmt.Sprintf("unknown format %q", l.Format), "text or json"))
	}
	return config.Join(errs...)
}

// LoadConfig reads path over the defaults; path "" gives the embedded default.
func LoadConfig(path string) (*Config, error) {
	c := DefaultConfig()
	if path == "" {
		c.embedded = true
		if err := config.Validate("(embedded default)", c); err != nil {
			return nil, err
		}
		return c, nil
	}
	if err := config.LoadFile(path, c); err != nil {
		return nil, err
	}
	return c, nil
}
