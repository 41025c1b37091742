package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dovetail-mail/dovetail/directory"
	diropen "github.com/dovetail-mail/dovetail/directory/open"
	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/store"
	storeopen "github.com/dovetail-mail/dovetail/store/open"
)

// backends opens the shared directory and store once per process, so `serve`
// gives every daemon the same LDAP pool and the same SQLite/Redis handle.
type backends struct {
	dirOnce   sync.Once
	dir       directory.Directory
	dirErr    error
	storeOnce sync.Once
	st        store.Store
	storeErr  error

	// What has been opened successfully, for /readyz, which must not open
	// anything itself.
	openedDir   atomic.Pointer[directory.Directory]
	openedStore atomic.Pointer[store.Store]
}

// Directory returns the shared user directory (static users file or LDAP).
func (a *App) Directory(ctx context.Context) (directory.Directory, error) {
	a.be.dirOnce.Do(func() {
		a.be.dir, a.be.dirErr = openDirectory(ctx, a)
		if a.be.dirErr == nil {
			a.onClose(a.be.dir.Close)
			a.be.openedDir.Store(&a.be.dir)
		}
	})
	return a.be.dir, a.be.dirErr
}

// Store returns the shared state store (SQLite in the data dir, or Redis).
func (a *App) Store(ctx context.Context) (store.Store, error) {
	a.be.storeOnce.Do(func() {
		a.be.st, a.be.storeErr = openStore(ctx, a)
		if a.be.storeErr == nil {
			a.onClose(a.be.st.Close)
			a.be.openedStore.Store(&a.be.st)
		}
	})
	return a.be.st, a.be.storeErr
}

func openDirectory(ctx context.Context, a *App) (directory.Directory, error) {
	cfg := a.Config()
	dc := cfg.Directory
	if dc.Backend == "static" && dc.Static.Path == "" {
		p := filepath.Join(cfg.DataDir, "users")
		switch {
		case fileExists(p):
			dc.Static.Path = p
		case a.ConfigPath == "":
			// The quickstart (no config file): the embedded demo users until the
			// admin makes <data_dir>/users, with a warning.
			a.Log.Warn("serving the embedded demo users (demo@example.com / demo); create a users file to replace them",
				"users_file", p)
			return newDemoUntilUsersFile(dc.Static, p, a.Log.With("directory", "static"))
		default:
			// Never with a config file: a production host whose users file went
			// missing would accept demo/demo for SMTP AUTH, an open relay.
			// LoadConfig refuses such a file when `daemons:` needs the directory;
			// this covers a daemon run alone that is not listed there.
			return nil, fmt.Errorf("%s: directory.static.path: no users file: path is not set and %s does not exist "+
				"(hint: set directory.static.path to a users file (Dovecot passwd-file format) or create %[2]s; "+
				"the demo users are only served without a config file)", a.ConfigPath, p)
		}
	}
	return diropen.Open(ctx, dc, a.Log)
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func openStore(ctx context.Context, a *App) (store.Store, error) {
	cfg := a.Config()
	if cfg.Store.Backend == "" || cfg.Store.Backend == store.BackendSQLite {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	opts := []storeopen.Option{storeopen.WithLogger(a.Log)}
	if reg := a.registerer(); reg != nil {
		opts = append(opts, storeopen.WithRegisterer(reg))
	}
	return storeopen.Open(ctx, cfg.Store, cfg.DataDir, opts...)
}

// readinessProbe is the login /readyz looks up to see that the directory
// answers; "not found" is an answer.
const readinessProbe = "dovetail-readiness-probe"

type pinger interface {
	Ping(ctx context.Context) error
}

// readyChecks are the /readyz checks for the backends this process has
// opened (one it does not use cannot be what makes it not ready).
func (a *App) readyChecks() []daemon.ReadyCheck {
	var cs []daemon.ReadyCheck
	if p := a.be.openedDir.Load(); p != nil {
		dir := *p
		cs = append(cs, daemon.ReadyCheck{Name: "directory", Check: func(ctx context.Context) error {
			if pg, ok := dir.(pinger); ok {
				return pg.Ping(ctx)
			}
			_, err := dir.LookupLogin(ctx, readinessProbe)
			if err == nil || errors.Is(err, directory.ErrNotFound) || errors.Is(err, directory.ErrDisabled) {
				return nil
			}
			return err
		}})
	}
	if p := a.be.openedStore.Load(); p != nil {
		st := *p
		cs = append(cs, daemon.ReadyCheck{Name: "store", Check: func(ctx context.Context) error {
			if pg, ok := st.(pinger); ok {
				return pg.Ping(ctx)
			}
			_, err := st.Get(ctx, "readyz")
			if err == nil || errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}})
	}
	return cs
}
