package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/dovetail-mail/dovetail/directory"
	diropen "github.com/dovetail-mail/dovetail/directory/open"
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
}

// Directory returns the shared user directory (static users file or LDAP).
func (a *App) Directory(ctx context.Context) (directory.Directory, error) {
	a.be.dirOnce.Do(func() {
		a.be.dir, a.be.dirErr = openDirectory(ctx, a)
		if a.be.dirErr == nil {
			a.onClose(a.be.dir.Close)
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
		}
	})
	return a.be.st, a.be.storeErr
}

func openDirectory(ctx context.Context, a *App) (directory.Directory, error) {
	cfg := a.Config()
	dc := cfg.Directory
	if dc.Backend == "static" && dc.Static.Path == "" {
		// The quickstart's users file: <data_dir>/users once the admin has made
		// one; until then the embedded demo users, with a warning.
		if p := filepath.Join(cfg.DataDir, "users"); fileExists(p) {
			dc.Static.Path = p
		} else {
			a.Log.Warn("serving the embedded demo users (demo@example.com / demo); create a users file to replace them",
				"users_file", p)
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
	return storeopen.Open(ctx, cfg.Store, cfg.DataDir, storeopen.WithLogger(a.Log))
}
