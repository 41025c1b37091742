package cli

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/directory/static"
)

// demoUntilUsersFile is the quickstart's directory: the embedded demo users
// until <data_dir>/users exists, then that file (reloaded when it changes, as
// any users file). The README promises the demo user only until the file
// exists, and without the switch a running quickstart kept accepting
// demo/demo — SMTP AUTH through Postfix — after the admin created it: a
// SIGHUP does not reopen the directory, and no setting had changed to say a
// restart was needed. Whether the file appeared is looked at lazily, at most
// every directory.static.check_interval, as the users file itself is.
type demoUntilUsersFile struct {
	cfg static.Config // Path: the users file to switch to
	log *slog.Logger

	cur      atomic.Pointer[static.Directory]
	switched atomic.Bool

	mu        sync.Mutex   // one look at a time
	lastCheck atomic.Int64 // wall clock, as static's own check
	failed    os.FileInfo  // the file that did not load, not retried until it changes (sameFile)
}

var (
	_ directory.Directory    = (*demoUntilUsersFile)(nil)
	_ directory.SecretReader = (*demoUntilUsersFile)(nil)
)

func newDemoUntilUsersFile(cfg static.Config, path string, log *slog.Logger) (*demoUntilUsersFile, error) {
	demo := cfg
	demo.Path = "" // the embedded demo users
	d, err := static.New(demo, log)
	if err != nil {
		return nil, err
	}
	q := &demoUntilUsersFile{cfg: cfg, log: log}
	q.cfg.Path = path
	q.cur.Store(d)
	q.lastCheck.Store(time.Now().UnixNano())
	return q, nil
}

// current returns the users file's directory once it loaded, else the demo
// users after looking whether the file appeared when a look is due.
func (q *demoUntilUsersFile) current() *static.Directory {
	if q.switched.Load() {
		return q.cur.Load()
	}
	now := time.Now().UnixNano()
	if since := now - q.lastCheck.Load(); (since >= 0 && since < int64(q.cfg.CheckInterval)) || !q.mu.TryLock() {
		return q.cur.Load()
	}
	defer q.mu.Unlock()
	q.lastCheck.Store(now)
	fi, err := os.Stat(q.cfg.Path)
	if err != nil || !fi.Mode().IsRegular() || q.failed != nil && sameFile(fi, q.failed) {
		return q.cur.Load()
	}
	d, err := static.New(q.cfg, q.log)
	if err != nil {
		q.failed = fi
		q.log.Error("users file not loaded; still serving the embedded demo users", "path", q.cfg.Path, "err", err)
		return q.cur.Load()
	}
	q.cur.Store(d)
	q.switched.Store(true)
	q.log.Warn("users file created: the embedded demo users are no longer served", "path", q.cfg.Path)
	return d
}

// LookupLogin implements directory.Lookup.
func (q *demoUntilUsersFile) LookupLogin(ctx context.Context, login string) (*directory.User, error) {
	return q.current().LookupLogin(ctx, login)
}

// LookupAddress implements directory.Lookup.
func (q *demoUntilUsersFile) LookupAddress(ctx context.Context, addr string) (*directory.User, error) {
	return q.current().LookupAddress(ctx, addr)
}

// Authenticate implements directory.Authenticator.
func (q *demoUntilUsersFile) Authenticate(ctx context.Context, login, password string) (*directory.User, error) {
	return q.current().Authenticate(ctx, login, password)
}

// StoredPassword implements directory.SecretReader.
func (q *demoUntilUsersFile) StoredPassword(ctx context.Context, login string) (string, string, *directory.User, error) {
	return q.current().StoredPassword(ctx, login)
}

// Close implements directory.Directory.
func (q *demoUntilUsersFile) Close() error { return q.cur.Load().Close() }

// sameFile reports whether a and b describe the file unchanged: its size,
// mtime and ctime. The ctime moves with chmod and chown too, so a file that
// failed to load because it could not be read is tried again once the admin
// fixes its owner or mode, not only when its contents change.
func sameFile(a, b os.FileInfo) bool {
	if a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime()) {
		return false
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return !ok1 || !ok2 || sa.Ctim == sb.Ctim
}
