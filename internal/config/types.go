package config

import (
	"fmt"
	"math"
	"math/big"
	"net"
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
		// The number is written as time.ParseDuration's are (an optional sign,
		// digits, one optional fraction; no exponent, NaN or Inf) and computed
		// exactly: a float would turn a value past time.Duration's ~292 years,
		// or NaN, into an arbitrary (negative) duration instead of an error.
		num := strings.TrimLeft(s[:n-1], "+-")
		if len(s[:n-1])-len(num) > 1 || num == "" || num == "." || strings.Count(num, ".") > 1 ||
			strings.Trim(num, "0123456789.") != "" {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 300ms, 30s, 5m, 2h, 30d)", s)
		}
		unit := int64(24 * time.Hour)
		if s[n-1] == 'w' {
			unit *= 7
		}
		r, ok := new(big.Rat).SetString(num)
		if !ok {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 300ms, 30s, 5m, 2h, 30d)", s)
		}
		r.Mul(r, new(big.Rat).SetInt64(unit))
		v := new(big.Int).Quo(r.Num(), r.Denom()) // whole nanoseconds, as time.ParseDuration
		if !v.IsInt64() {
			return 0, fmt.Errorf("invalid duration %q: too large (at most %s)", s, time.Duration(math.MaxInt64))
		}
		if s[0] == '-' {
			v.Neg(v)
		}
		return time.Duration(v.Int64()), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 300ms, 30s, 5m, 2h, 30d)", s)
	}
	return v, nil
}

// UnmarshalYAML implements yaml.Unmarshaler. Its errors are *yaml.TypeError:
// with any other error yaml.v3 stops decoding, and the values after this one
// would not be decoded (nor checked).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected a duration such as 30s or 5m")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return typeError(n, err.Error())
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Size is a byte count written as "10MB", "512KiB", "1G" or a bare number.
type Size int64

// sizeUnits are the suffixes ParseSize accepts (upper-cased). K, KB and KiB
// are all 1024: nobody sizes mail in powers of ten, and treating KB as 1000
// would silently shrink every limit written the common way.
var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
	"M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
	"G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
	"T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40,
}

// ParseSize accepts a whole number of bytes, optionally with a unit B, KB/KiB,
// MB/MiB, GB/GiB or TB/TiB (K, M, G, T too; powers of 1024, any case). A
// fraction is allowed when the result is a whole number of bytes (1.5KB).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid size %q: must not be negative", s)
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" || strings.Count(num, ".") > 1 || num == "." {
		return 0, fmt.Errorf("invalid size %q (use e.g. 4096, 512KB, 10MB, 1GB)", s)
	}
	mult, ok := sizeUnits[strings.ToUpper(unit)]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KB/KiB, MB/MiB, GB/GiB or TB/TiB)", s, unit)
	}
	// Exact arithmetic: a float would round 1.9 down to one byte and let
	// huge values wrap around to negative ones.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q (use e.g. 4096, 512KB, 10MB, 1GB)", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid size %q: not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("invalid size %q: too large (at most %d bytes)", s, int64(math.MaxInt64))
	}
	return r.Num().Int64(), nil
}

// UnmarshalYAML implements yaml.Unmarshaler; errors are *yaml.TypeError (see
// Duration.UnmarshalYAML).
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected a size such as 10MB")
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return typeError(n, err.Error())
	}
	*z = Size(v)
	return nil
}

func typeError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
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

// maxUnixPath is the longest unix socket path bind accepts on Linux: sun_path
// is 108 bytes, the terminating NUL included.
const maxUnixPath = 107

// IsUnix reports whether the listener is a unix socket.
func (l Listener) IsUnix() bool { return strings.HasPrefix(l.Address, "unix:") }

// Validate checks the address and mode syntax.
func (l Listener) Validate() error {
	var errs []error
	switch {
	case l.Address == "":
		// empty = disabled; callers that need one say so themselves
	case l.IsUnix():
		switch p := strings.TrimPrefix(l.Address, "unix:"); {
		case p == "":
			errs = append(errs, Errorf("address", "unix socket path is empty", "write unix:/var/spool/postfix/private/dovetail-auth"))
		case len(p) > maxUnixPath:
			// bind would fail with a bare "invalid argument" at start.
			errs = append(errs, Errorf("address", fmt.Sprintf("unix socket path is %d bytes long, the most is %d (a socket address holds 108 with the NUL)", len(p), maxUnixPath),
				"a shorter path, e.g. unix:/var/spool/postfix/private/dovetail-lmtp"))
		}
	default:
		// Checked as net.Listen will read it: `config check` must not pass an
		// address that stops `serve` at the next restart.
		_, port, err := net.SplitHostPort(strings.TrimPrefix(l.Address, "tcp:"))
		if err != nil {
			errs = append(errs, Errorf("address", fmt.Sprintf("%q is neither unix:/path nor host:port", l.Address), "write 127.0.0.1:12345 or unix:/path"))
		} else if _, err := net.LookupPort("tcp", port); err != nil {
			errs = append(errs, Errorf("address", fmt.Sprintf("port %q is neither a number from 0 to 65535 nor a service name", port), "e.g. 127.0.0.1:12345"))
		}
	}
	if l.Mode != "" {
		if _, err := strconv.ParseUint(l.Mode, 8, 32); err != nil {
			errs = append(errs, Errorf("mode", fmt.Sprintf("%q is not an octal mode", l.Mode), "write e.g. \"0660\""))
		}
	}
	return Join(errs...)
}
