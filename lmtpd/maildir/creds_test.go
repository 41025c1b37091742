//go:build linux

package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// nobody is the unprivileged user the tests deliver for.
const nobody = 65534

// userDirs makes each directory 0700 and the user's, as the user would have.
func userDirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
}

// userSymlink makes the user's symlink at link pointing to target.
func userSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, nobody); err != nil {
		t.Fatal(err)
	}
}

// TestUserSymlinkedDirsFail: running as root, lmtpd writes into a user's
// Maildir with the user's credentials, so a directory of it the user replaced
// by a symlink to a root-owned place (new -> /etc/logrotate.d, tmp ->
// /root/.ssh, the whole Maildir -> /etc) makes the delivery fail with EACCES —
// a temporary failure — and nothing is created there, let alone given to the
// user.
func TestUserSymlinkedDirsFail(t *testing.T) {
	testenv.Need(t) // root: delivering with a user's credentials is what root's lmtpd does
	for _, tc := range []struct {
		name   string
		folder string
		flags  []string // into cur/ instead of new/; keywords write dovecot-keywords
		setup  func(t *testing.T, root, target string)
	}{
		{"new", "", nil, func(t *testing.T, root, target string) {
			userDirs(t, root, filepath.Join(root, "cur"), filepath.Join(root, "tmp"))
			userSymlink(t, target, filepath.Join(root, "new"))
		}},
		{"tmp", "", nil, func(t *testing.T, root, target string) {
			userDirs(t, root, filepath.Join(root, "cur"), filepath.Join(root, "new"))
			userSymlink(t, target, filepath.Join(root, "tmp"))
		}},
		{"folder", "Lists", []string{"$Label1"}, func(t *testing.T, root, target string) {
			userDirs(t, root, filepath.Join(root, "cur"), filepath.Join(root, "new"), filepath.Join(root, "tmp"))
			userSymlink(t, target, filepath.Join(root, ".Lists"))
		}},
		{"maildir root", "", []string{`\Seen`}, func(t *testing.T, root, target string) {
			userSymlink(t, target, root)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			target := filepath.Join(base, "etc")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(target, 0o755)
			home := filepath.Join(base, "home")
			userDirs(t, home)
			mb := Mailbox{Root: filepath.Join(home, "Maildir"), Home: home, UID: nobody, GID: nobody, Chown: true, QuotaBytes: 1 << 20}
			tc.setup(t, mb.Root, target)

			w := New(Options{Fsync: true, Hostname: "mx"})
			p, err := w.Deliver(mb, Target{Folder: tc.folder, Create: true, Flags: tc.flags}, NewMessage([]byte("Subject: x\n\nbody\n")))
			if err == nil {
				t.Fatalf("delivered to %s through the user's symlink", p)
			}
			if !errors.Is(err, syscall.EACCES) {
				t.Errorf("error %v, want EACCES", err)
			}
			// The temporary kind: none of the errors lmtpd answers permanently or
			// works around (over quota 552, missing folder → INBOX, bad name).
			for _, perm := range []error{ErrQuota, ErrNoMailbox, ErrBadName} {
				if errors.Is(err, perm) {
					t.Errorf("error %v is %v, want a temporary failure", err, perm)
				}
			}
			ents, err := os.ReadDir(target)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				t.Errorf("created in the root-owned target: %s", e.Name())
			}
		})
	}
}

// TestUserCredsKeepOwnershipAndModes: a delivery as root into a user's
// Maildir, now done with the user's credentials, leaves exactly what root's
// mkdir/open + chown left: directories 0700 and files 0600, all the user's —
// also under a set-group-ID home whose group is not the user's (new entries
// would inherit it; the kept fchown/Lchown give them the user's group, as root's
// lmtpd did).
func TestUserCredsKeepOwnershipAndModes(t *testing.T) {
	testenv.Need(t) // root: delivering with a user's credentials is what root's lmtpd does
	for _, setgid := range []bool{false, true} {
		t.Run(fmt.Sprintf("setgid=%v", setgid), func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			userDirs(t, home)
			if setgid {
				os.Chown(home, nobody, 0)
				os.Chmod(home, 0o700|os.ModeSetgid)
			}
			mb := Mailbox{Root: filepath.Join(home, "Maildir"), Home: home, UID: nobody, GID: nobody, Chown: true, QuotaBytes: 1 << 20}
			w := New(Options{Fsync: true, HardLink: true, Hostname: "mx"})
			msg := NewMessage([]byte("Subject: x\n\nbody\n"))
			for _, tg := range []Target{{}, {Folder: "Lists/Work", Create: true, Flags: []string{`\Seen`, "$Work"}}, {Folder: "Lists/Work"}} {
				if _, err := w.Deliver(mb, tg, msg); err != nil {
					t.Fatal(err)
				}
			}
			if b, c, err := Usage(mb); err != nil || c != 3 || b != 3*msg.Size() {
				t.Errorf("usage %d bytes %d messages, %v", b, c, err)
			}
			n := 0
			err := filepath.Walk(mb.Root, func(p string, info os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				n++
				st := info.Sys().(*syscall.Stat_t)
				if st.Uid != nobody || st.Gid != nobody {
					t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, nobody, nobody)
				}
				want := os.FileMode(0o600)
				if info.IsDir() {
					want = 0o700
				}
				if info.Mode().Perm() != want {
					t.Errorf("%s mode %o, want %o", p, info.Mode().Perm(), want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// the root and cur/new/tmp, .Lists.Work and its cur/new/tmp,
			// maildirfolder and dovecot-keywords, maildirsize, 3 names of the message
			if n != 1+3+1+3+2+1+3 {
				t.Errorf("%d entries in the Maildir", n)
			}
		})
	}
}

// TestOtherGoroutinesStayRoot: only the thread a delivery runs on takes the
// user's credentials, and only for the delivery. Goroutines working at the
// same time — and after — still run as root: they create files in a 0700
// root-only directory, and those files are root's.
func TestOtherGoroutinesStayRoot(t *testing.T) {
	testenv.Need(t) // root: delivering with a user's credentials is what root's lmtpd does
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "home")
	userDirs(t, home)
	mb := Mailbox{Root: filepath.Join(home, "Maildir"), Home: home, UID: nobody, GID: nobody, Chown: true}
	w := New(Options{Hostname: "mx"})

	rootWork := func(i int) error {
		p := filepath.Join(private, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			return err
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 0 || s.Gid != 0 {
			return fmt.Errorf("%s created as %d:%d", p, s.Uid, s.Gid)
		}
		if fsuid, err := threadFsuid(); err != nil || fsuid != "0" {
			return fmt.Errorf("a root goroutine's thread has fsuid %s (%v)", fsuid, err)
		}
		return os.Remove(p)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := 0; g < 8; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if _, err := w.Deliver(mb, Target{}, NewMessage([]byte("Subject: x\n\nbody\n"))); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if err := rootWork(g*1000 + i); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// And afterwards, on whatever threads the deliveries gave back.
	var after sync.WaitGroup
	for i := 0; i < 32; i++ {
		after.Add(1)
		go func() {
			defer after.Done()
			if err := rootWork(100000 + i); err != nil {
				t.Error(err)
			}
		}()
	}
	after.Wait()
	if ents, _ := os.ReadDir(filepath.Join(mb.Root, "new")); len(ents) != 8*25 {
		t.Errorf("%d messages delivered, want %d", len(ents), 8*25)
	}
}

// TestRunAs: the function runs with the user's fsuid, fsgid and groups; a
// panic in it reaches the caller (where lmtpd's recovery is) after the switch
// back.
func TestRunAs(t *testing.T) {
	testenv.Need(t) // root: delivering with a user's credentials is what root's lmtpd does
	err := runAs(nobody, nobody-1, func() error {
		status, err := threadStatus()
		if err != nil {
			return err
		}
		for _, want := range []string{"Uid: 0 0 0 65534", "Gid: 0 0 0 65533", "Groups: 65533"} {
			if !strings.Contains(status, "\n"+want+"\n") {
				return fmt.Errorf("thread status lacks %q:\n%s", want, status)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the panic", v)
			}
		}()
		runAs(nobody, nobody, func() error { panic("boom") })
	}()
	if fsuid, err := threadFsuid(); err != nil || fsuid != "0" {
		t.Errorf("fsuid %s after runAs (%v)", fsuid, err)
	}
}

// threadStatus is the calling thread's /proc status, every line's fields
// separated by one space. The goroutine stays on its thread from the open to
// the last read: moved in between, it would read the status of the thread it
// left — which may be running a delivery by then.
func threadStatus() (string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		out.WriteString("\n" + strings.Join(strings.Fields(line), " "))
	}
	return out.String() + "\n", nil
}

// threadFsuid is the fsuid of the calling thread (the fourth Uid: field).
func threadFsuid() (string, error) {
	status, err := threadStatus()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(status, "\n") {
		if f := strings.Fields(line); len(f) == 5 && f[0] == "Uid:" {
			return f[4], nil
		}
	}
	return "", errors.New("no Uid: line in /proc/thread-self/status")
}

// TestMailboxAsUser: AsUser runs its function with the user's credentials when
// deliveries would (a root-only file cannot be opened), with the process's own
// when they would not, and a switch that fails is reported as ErrCredentials
// without running the function.
func TestMailboxAsUser(t *testing.T) {
	testenv.Need(t) // root: only root switches to the user's credentials
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func() error {
		_, err := os.ReadFile(secret)
		return err
	}
	mb := Mailbox{Root: "/nonexistent/Maildir", UID: nobody, GID: nobody, Chown: true}
	if err := mb.AsUser(read); !errors.Is(err, os.ErrPermission) || errors.Is(err, ErrCredentials) {
		t.Errorf("as the user: %v, want the open's permission error", err)
	}
	if fsuid, err := threadFsuid(); err != nil || fsuid != "0" {
		t.Errorf("fsuid %s after AsUser (%v)", fsuid, err)
	}
	mb.Chown = false
	if err := mb.AsUser(read); err != nil {
		t.Errorf("without Chown (the process's credentials): %v", err)
	}
	bad := Mailbox{UID: nobody, GID: -1, Chown: true}
	ran := false
	if err := bad.AsUser(func() error { ran = true; return nil }); !errors.Is(err, ErrCredentials) || ran {
		t.Errorf("failing switch: %v (function ran: %v), want ErrCredentials without running it", err, ran)
	}
}
