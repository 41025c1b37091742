package daemon

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// A unix socket must never be reachable with a wider mode than configured, not
// even between bind and chmod: with umask 0 a plain bind creates it 0777.
func TestListenUnixNeverWiderThanConfigured(t *testing.T) {
	old := setUmask(0)
	defer setUmask(old)
	for _, mode := range []os.FileMode{0o660, 0o600, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.sock")
			var widest atomic.Uint32
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // watch the path while Listen runs
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if fi, err := os.Lstat(path); err == nil {
						if extra := uint32(fi.Mode().Perm() &^ mode); extra > widest.Load() {
							widest.Store(extra)
						}
					}
				}
			}()
			for range 200 {
				ln, err := Listen(config.Listener{Address: "unix:" + path, Mode: "0" + strconvOctal(mode)})
				if err != nil {
					close(stop)
					wg.Wait()
					t.Fatal(err)
				}
				fi, err := os.Stat(path)
				if err != nil || fi.Mode().Perm() != mode {
					t.Errorf("mode after Listen = %v, %v; want %v", fi.Mode().Perm(), err, mode)
				}
				ln.Close()
			}
			close(stop)
			wg.Wait()
			if w := widest.Load(); w != 0 {
				t.Errorf("socket seen with permission bits %#o beyond the configured %v", w, mode)
			}
		})
	}
}

func strconvOctal(m os.FileMode) string {
	const digits = "01234567"
	p := uint32(m.Perm())
	return string([]byte{digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

// The socket is bound with its configured mode, never wider (with mode 0
// nobody but root can connect), and the umask is restored.
func TestBindUnixRestricted(t *testing.T) {
	old := setUmask(0)
	defer setUmask(old)
	for _, mode := range []os.FileMode{0, 0o600, 0o660, 0o777} {
		path := filepath.Join(t.TempDir(), "s.sock")
		ln, err := bindUnix(path, mode)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if p := fi.Mode().Perm(); p != mode {
			t.Errorf("bound with mode %v, want %v", p, mode)
		}
		ln.Close()
		if got := setUmask(0); got != 0 {
			t.Errorf("umask after bind = %#o, want it restored to 0", got)
		}
	}
}

// Only a refused connection proves a socket stale; any other dial error (no
// permission, listener too busy) leaves it alone and fails the listen.
func TestRemoveStale(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dialErr    error
		wantErr    bool
		wantRemove bool
	}{
		{"refused: stale", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false, true},
		{"no permission", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}, true, false},
		{"backlog full", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EAGAIN)}, true, false},
		{"timeout", os.ErrDeadlineExceeded, true, false},
		{"answers: in use", nil, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close() // the socket file stays, as after a crash
			dial := func(string, string) (net.Conn, error) {
				if tc.dialErr != nil {
					return nil, tc.dialErr
				}
				a, b := net.Pipe()
				b.Close()
				return a, nil
			}
			_, err = listen(config.Listener{Address: "unix:" + path}, dial, nil)
			if (err != nil) != tc.wantErr {
				t.Errorf("listen error = %v, want error %v", err, tc.wantErr)
			}
			_, statErr := os.Lstat(path)
			removed := errors.Is(statErr, os.ErrNotExist)
			if !tc.wantErr {
				// listen bound a new socket in its place
				removed = statErr == nil
			}
			if removed != tc.wantRemove {
				t.Errorf("socket replaced = %v, want %v", removed, tc.wantRemove)
			}
		})
	}
}

// The socket directory of Postfix (/var/spool/postfix/private) belongs to the
// postfix user, who can swap the freshly bound socket for a symlink before
// dovetail (root) applies owner and mode. Neither may then follow the link:
// chmod/chown through it would hand any root-owned file (/etc/shadow) to
// postfix.
func TestListenUnixDoesNotFollowSwappedSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := config.Listener{Address: "unix:" + filepath.Join(dir, "s.sock"), Mode: "0666"}
	if os.Geteuid() == 0 {
		l.Owner, l.Group = "65534", "65534"
	}
	swap := func(path string) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, path); err != nil {
			t.Fatal(err)
		}
	}
	if ln, err := listen(l, net.Dial, swap); err == nil {
		ln.Close()
	}
	fi, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("victim mode = %v, want it left at 0600", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid()) {
		t.Errorf("victim owner = %d:%d, want it left at %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
}
