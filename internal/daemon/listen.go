// Package daemon runs dovetail's servers: listeners on TCP and unix sockets,
// signals (SIGTERM/SIGINT two-phase shutdown, SIGHUP all-or-nothing reload),
// and the HTTP endpoint for Prometheus /metrics, /healthz (liveness) and
// /readyz (dependencies).
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
	"sync"
	"syscall"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// Listen opens l: "unix:/path" (stale socket removed, mode/owner/group applied) or
// "host:port" for TCP.
func Listen(l config.Listener) (net.Listener, error) {
	return listen(l, net.Dial, nil)
}

// listen is Listen with the dialer that probes a stale socket, and bound (if
// not nil) called right after the bind (tests).
func listen(l config.Listener, dial func(network, addr string) (net.Conn, error), bound func(path string)) (net.Listener, error) {
	if !l.IsUnix() {
		ln, err := net.Listen("tcp", strings.TrimPrefix(l.Address, "tcp:"))
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", l.Address, err)
		}
		return ln, nil
	}
	path := strings.TrimPrefix(l.Address, "unix:")
	var mode os.FileMode
	if l.Mode != "" {
		m, err := strconv.ParseUint(l.Mode, 8, 32)
		if err != nil {
			return nil, fmt.Errorf("listen %s: mode %q: %w", l.Address, l.Mode, err)
		}
		mode = os.FileMode(m) & os.ModePerm
	}
	uid, gid, err := owner(l)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	if err := removeStale(path, dial); err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	var ln net.Listener
	if l.Mode != "" {
		ln, err = bindUnix(path, mode)
	} else {
		ln, err = net.Listen("unix", path) // the process's umask decides
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	if bound != nil {
		bound(path)
	}
	// The socket already has its mode (no chmod), and Lchown does not follow
	// a symlink: the directory may belong to someone else (Postfix's private/
	// is the postfix user's), who could swap the socket for a link to any
	// file between bind and here, and chmod or chown through it would hand
	// that file over.
	if uid != -1 || gid != -1 {
		if err := os.Lchown(path, uid, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: %w", l.Address, err)
		}
	}
	return ln, nil
}

// removeStale removes a socket left by a process that died, so the bind does
// not fail. Only a refused connection proves that nobody listens: a socket we
// may not connect to (EACCES), or whose listener is too busy to accept
// (EAGAIN), may belong to a live daemon, and removing it would cut that
// daemon off from its clients.
func removeStale(path string, dial func(network, addr string) (net.Conn, error)) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil // nothing there, or not a socket: bind reports it
	}
	c, err := dial("unix", path)
	switch {
	case err == nil:
		c.Close()
		return errors.New("socket is in use by another process")
	case errors.Is(err, syscall.ECONNREFUSED):
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale socket: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("socket exists and cannot be checked, not removing it: %w", err)
	}
}

// umaskMu serializes binds under a changed umask: the umask belongs to the
// process, and two binds overlapping would restore each other's value.
var umaskMu sync.Mutex

// bindUnix binds a unix socket created with mode perm: bind makes it 0777
// minus the umask, so the umask is the complement of perm for the bind. From
// its first moment it is never wider than configured (until its owner is
// applied, only root, and root's group for group bits, can connect), and no
// chmod is needed afterwards (see listen). The umask is process-wide, so this
// is for startup only; files other goroutines create meanwhile only come out
// more restricted.
func bindUnix(path string, perm os.FileMode) (net.Listener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := setUmask(int(0o777 &^ perm))
	defer setUmask(old)
	return net.Listen("unix", path)
}

// owner resolves the configured owner and group to ids, -1 when not set.
func owner(l config.Listener) (uid, gid int, err error) {
	uid, gid = -1, -1
	if l.Owner != "" {
		id, err := lookupID(l.Owner, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("owner %q: %w", l.Owner, err)
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
			return 0, 0, fmt.Errorf("group %q: %w", l.Group, err)
		}
		gid = id
	}
	return uid, gid, nil
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
