// Package static is a directory backed by a passwd-file style users file (the
// format Dovecot's passwd-file driver reads), reloaded when it changes. With no
// path configured it serves an embedded default for the quickstart.
package static

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/directory/password"
	"github.com/dovetail-mail/dovetail/internal/config"
)

//go:embed default_users
var defaultUsers []byte

// Config is the `directory.static` section.
type Config struct {
	// Path of the users file; empty serves the embedded default (demo users).
	Path string `yaml:"path"`
	// DefaultScheme applies to passwords written without {SCHEME} (Dovecot's
	// default_pass_scheme; passwd-file's default is CRYPT).
	DefaultScheme string `yaml:"default_scheme"`
	// DefaultHome is used for users whose home field is empty; %u, %n and %d
	// expand to the login, its local part and its domain.
	DefaultHome string `yaml:"default_home"`
	// CheckInterval is how often the file's size and mtime are compared to
	// pick up edits (checked lazily on use, no goroutine).
	CheckInterval config.Duration `yaml:"check_interval"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{DefaultScheme: "CRYPT", CheckInterval: config.Duration(2 * time.Second)}
}

// Validate checks the section's own fields.
func (c *Config) Validate() error {
	var errs []error
	if c.DefaultScheme != "" {
		if _, err := password.Parse("{"+c.DefaultScheme+"}x", ""); errors.Is(err, password.ErrUnknownScheme) {
			errs = append(errs, config.Errorf("default_scheme", fmt.Sprintf("unknown scheme %q", c.DefaultScheme), "e.g. CRYPT, SSHA512, PLAIN"))
		}
	}
	if c.CheckInterval < 0 {
		errs = append(errs, config.Errorf("check_interval", "must not be negative", "e.g. 2s; 0 checks on every lookup"))
	}
	if c.Path != "" {
		if st, err := os.Stat(c.Path); err != nil {
			errs = append(errs, config.Errorf("path", err.Error(), "create the users file, or leave path empty to use <data_dir>/users (the demo users are only served without a config file)"))
		} else if st.IsDir() {
			errs = append(errs, config.Errorf("path", "is a directory", "point it at the users file"))
		}
	}
	return config.Join(errs...)
}

// Directory serves users from the file. Safe for concurrent use.
type Directory struct {
	cfg Config
	log *slog.Logger

	tab atomic.Pointer[table]

	mu        sync.Mutex // serializes reload checks
	lastCheck atomic.Int64
	size      int64
	mtime     time.Time
	// readFile is os.ReadFile; tests replace it to make a read fail (they
	// run as root, which file modes do not stop).
	readFile func(name string) ([]byte, error)
}

var (
	_ directory.Directory    = (*Directory)(nil)
	_ directory.SecretReader = (*Directory)(nil)
)

// New loads the users file (or the embedded default). A file that fails to parse
// is an error here; later reloads that fail keep the previous contents.
func New(cfg Config, log *slog.Logger) (*Directory, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Directory{cfg: cfg, log: log, readFile: os.ReadFile}
	if cfg.Path == "" {
		t, err := parse("(embedded default users)", defaultUsers)
		if err != nil {
			return nil, err
		}
		d.tab.Store(t)
		return d, nil
	}
	if err := d.load(); err != nil {
		return nil, err
	}
	d.lastCheck.Store(time.Now().UnixNano())
	return d, nil
}

// errUnparsable marks a load that read the file but could not parse it.
var errUnparsable = errors.New("static: users file not loaded")

func (d *Directory) load() error {
	st, err := os.Stat(d.cfg.Path)
	if err != nil {
		return fmt.Errorf("static: %w", err)
	}
	data, err := d.readFile(d.cfg.Path)
	if err != nil {
		return fmt.Errorf("static: %w", err)
	}
	t, err := parse(d.cfg.Path, data)
	if err != nil {
		return fmt.Errorf("%w: %w", errUnparsable, err)
	}
	d.tab.Store(t)
	d.size, d.mtime = st.Size(), st.ModTime()
	return nil
}

// current returns the table, reloading the file first when it changed.
func (d *Directory) current() *table {
	if d.cfg.Path == "" {
		return d.tab.Load()
	}
	// Wall-clock time (UnixNano has no monotonic reading): a negative
	// difference means the clock was stepped back since the last check,
	// which then counts as due instead of waiting for the clock to catch up.
	now := time.Now().UnixNano()
	if since := now - d.lastCheck.Load(); (since >= 0 && since < int64(d.cfg.CheckInterval)) || !d.mu.TryLock() {
		return d.tab.Load() // someone else is checking; serve the current table
	}
	defer d.mu.Unlock()
	d.lastCheck.Store(now)
	st, err := os.Stat(d.cfg.Path)
	if err != nil {
		d.log.Warn("users file unreadable; keeping the loaded users", "path", d.cfg.Path, "err", err)
		return d.tab.Load()
	}
	if st.Size() != d.size || !st.ModTime().Equal(d.mtime) {
		if err := d.load(); err != nil {
			d.log.Error("users file reload failed; keeping the previous users", "err", err)
			if errors.Is(err, errUnparsable) {
				// Don't re-parse a broken file on every check: it only
				// changes with a new size or mtime. A file that could not be
				// read (permissions, a replace in progress) is retried: fixing
				// its owner or mode changes neither, and the edit would
				// otherwise never be loaded.
				d.size, d.mtime = st.Size(), st.ModTime()
			}
		} else {
			d.log.Info("users file reloaded", "path", d.cfg.Path, "users", len(d.tab.Load().byLogin))
		}
	}
	return d.tab.Load()
}

// user returns a copy so callers cannot modify the shared table.
func (d *Directory) user(e *entry) *directory.User {
	u := e.user
	u.Addresses = append([]string(nil), e.user.Addresses...)
	u.Attrs = make(map[string][]string, len(e.user.Attrs))
	for k, v := range e.user.Attrs {
		u.Attrs[k] = append([]string(nil), v...)
	}
	if u.Home == "" && d.cfg.DefaultHome != "" {
		u.Home = expand(d.cfg.DefaultHome, u.Login)
	}
	return &u
}

func expand(tmpl, login string) string {
	local, domain, _ := strings.Cut(login, "@")
	return strings.NewReplacer("%u", login, "%n", local, "%d", domain).Replace(tmpl)
}

// LookupLogin implements directory.Lookup.
func (d *Directory) LookupLogin(_ context.Context, login string) (*directory.User, error) {
	e, ok := d.current().byLogin[strings.ToLower(login)]
	if !ok {
		return nil, fmt.Errorf("static: %q: %w", login, directory.ErrNotFound)
	}
	return d.user(e), nil
}

// LookupAddress implements directory.Lookup.
func (d *Directory) LookupAddress(_ context.Context, addr string) (*directory.User, error) {
	e, ok := d.current().byAddress[strings.ToLower(addr)]
	if !ok {
		return nil, fmt.Errorf("static: %q: %w", addr, directory.ErrNotFound)
	}
	return d.user(e), nil
}

// Authenticate implements directory.Authenticator. The password is checked
// before the status so a disabled account is only revealed to its owner.
func (d *Directory) Authenticate(ctx context.Context, login, pw string) (*directory.User, error) {
	e, ok := d.current().byLogin[strings.ToLower(login)]
	if !ok {
		return nil, fmt.Errorf("static: %q: %w", login, directory.ErrNotFound)
	}
	if e.password == "" {
		return nil, fmt.Errorf("static: %q has no password: %w", login, directory.ErrInvalidCredentials)
	}
	if err := password.VerifyContext(ctx, e.password, pw, d.cfg.DefaultScheme); err != nil {
		if password.NotChecked(err) {
			// No time was left to check the password (too many at once).
			return nil, fmt.Errorf("static: %q: %w: %w", login, directory.ErrUnavailable, err)
		}
		if !errors.Is(err, password.ErrMismatch) {
			d.log.Warn("stored password unusable", "user", e.user.Login, "line", e.line, "err", err)
		}
		return nil, fmt.Errorf("static: %q: %w", login, directory.ErrInvalidCredentials)
	}
	if !e.user.Enabled {
		return nil, fmt.Errorf("static: %q: %w", login, directory.ErrDisabled)
	}
	return d.user(e), nil
}

// StoredPassword implements directory.SecretReader: scheme (as written, e.g.
// "SSHA.B64") and data of the user's stored entry.
func (d *Directory) StoredPassword(_ context.Context, login string) (string, string, *directory.User, error) {
	e, ok := d.current().byLogin[strings.ToLower(login)]
	if !ok {
		return "", "", nil, fmt.Errorf("static: %q: %w", login, directory.ErrNotFound)
	}
	scheme, data := d.cfg.DefaultScheme, e.password
	if strings.HasPrefix(data, "{") {
		if end := strings.IndexByte(data, '}'); end > 0 {
			scheme, data = data[1:end], data[end+1:]
		}
	}
	return scheme, data, d.user(e), nil
}

// Close implements directory.Directory.
func (d *Directory) Close() error { return nil }
