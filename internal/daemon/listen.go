// Package daemon runs dovetail's servers: listeners on TCP and unix sockets,
// signals (SIGTERM/SIGINT two-phase shutdown, SIGHUP reload), and the HTTP
// endpoint for Prometheus /metrics and /healthz.
package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// Listen opens l: "unix:/path" (stale socket removed, mode/owner/group applied) or
// "host:port" for TCP.
func Listen(l config.Listener) (net.Listener, error) {
	if !l.IsUnix() {
		ln, err := net.Listen("tcp", strings.TrimPrefix(l.Address, "tcp:"))
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", l.Address, err)
		}
		return ln, nil
	}
	path := strings.TrimPrefix(l.Address, "unix:")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	// A socket left by a killed process blocks bind; remove it only if nobody answers.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: socket is in use by another process", l.Address)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	if err := applyOwnership(path, l); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	return ln, nil
}

func applyOwnership(path string, l config.Listener) error {
	if l.Mode != "" {
		m, err := strconv.ParseUint(l.Mode, 8, 32)
		if err != nil {
			return fmt.Errorf("mode %q: %w", l.Mode, err)
		}
		if err := os.Chmod(path, os.FileMode(m)); err != nil {
			return err
		}
	}
	if l.Owner == "" && l.Group == "" {
		return nil
	}
	uid, gid := -1, -1
	if l.Owner != "" {
		id, err := lookupID(l.Owner, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return fmt.Errorf("owner %q: %w", l.Owner, err)
		}
		uid = id
	}
	if l.Group != "" {
		id, err := lookupID(l.Group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			return fmt.Errorf("group %q: %w", l.Group, err)
		}
		gid = id
	}
	return os.Chown(path, uid, gid)
}

func lookupID(name string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	s, err := lookup(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("non-numeric id " + s)
	}
	return n, nil
}
