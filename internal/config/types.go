package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "300s", "5m", "1h30m" or with the
// admin-friendly day and week suffixes "30d", "2w".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration accepts Go durations plus a trailing d (days) or w (weeks).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
		v, err := strconv.ParseFloat(s[:n-1], 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		unit := 24 * time.Hour
		if s[n-1] == 'w' {
			unit *= 7
		}
		return time.Duration(v * float64(unit)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 300ms, 30s, 5m, 2h, 30d)", s)
	}
	return v, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration such as 30s or 5m", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Size is a byte count written as "10MB", "512KiB", "1G" or a bare number.
type Size int64

// ParseSize accepts a number with an optional K/M/G/T suffix (powers of 1024;
// "KB", "KiB" and "K" are the same).
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = strings.TrimSpace(t[:n-1])
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q (use e.g. 4096, 512KB, 10MB, 1GB)", s)
	}
	return int64(v * float64(mult)), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a size such as 10MB", n.Line)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*z = Size(v)
	return nil
}

// Listener says where a daemon listens: "unix:/path" or "host:port" (tcp). Mode,
// Owner and Group apply to unix sockets (Postfix wants
// /var/spool/postfix/private/... owned by postfix, mode 0660).
type Listener struct {
	Address string `yaml:"address"`
	Mode    string `yaml:"mode"`  // octal, e.g. "0660"; unix only
	Owner   string `yaml:"owner"` // user name or uid; unix only
	Group   string `yaml:"group"` // group name or gid; unix only
}

// IsUnix reports whether the listener is a unix socket.
func (l Listener) IsUnix() bool { return strings.HasPrefix(l.Address, "unix:") }

// Validate checks the address and mode syntax.
func (l Listener) Validate() error {
	var errs []error
	switch {
	case l.Address == "":
		// empty = disabled; callers that need one say so themselves
	case l.IsUnix():
		if strings.TrimPrefix(l.Address, "unix:") == "" {
			errs = append(errs, Errorf("address", "unix socket path is empty", "write unix:/var/spool/postfix/private/dovetail-auth"))
		}
	default:
		if !strings.Contains(l.Address, ":") {
			errs = append(errs, Errorf("address", fmt.Sprintf("%q is neither unix:/path nor host:port", l.Address), "write 127.0.0.1:12345 or unix:/path"))
		}
	}
	if l.Mode != "" {
		if _, err := strconv.ParseUint(l.Mode, 8, 32); err != nil {
			errs = append(errs, Errorf("mode", fmt.Sprintf("%q is not an octal mode", l.Mode), "write e.g. \"0660\""))
		}
	}
	return Join(errs...)
}
