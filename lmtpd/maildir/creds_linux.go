package maildir

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// runAs runs fn with the filesystem credentials of uid/gid — fsuid, fsgid and
// the supplementary groups reduced to gid — as Dovecot's LMTP delivers with the
// user's credentials: the kernel then checks every lookup and write as the user,
// and a symlink the user left in the Maildir into a root-owned place (new ->
// /etc/logrotate.d) fails with EACCES instead of making root write there.
//
// Credentials are per thread on Linux, so only one thread is switched: fn runs
// on a goroutine of its own, locked to its OS thread, that switches, runs fn and
// switches back. Only the per-thread system calls are used (setfsuid, setfsgid,
// setgroups through golang.org/x/sys/unix); never syscall.Setuid/Setgroups,
// which Go applies to every thread of the process.
//
// No other goroutine ever runs on that thread while it is switched (that is
// what LockOSThread means), and no thread inherits its credentials: in
// runtime.newm (src/runtime/proc.go, Go 1.26) a new OS thread needed while the
// current M is locked (m.lockedExt != 0) is not cloned from it but created by
// the template thread, which LockOSThread starts while this thread is still
// root's. If switching back fails the goroutine exits still locked, and the
// runtime then terminates the thread (goexit0) instead of reusing it.
//
// fn must not start goroutines of its own that touch the file system: they
// would run on other threads, as root.
func runAs(uid, gid int, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		restore, err := switchCreds(uid, gid)
		clean := restore == nil // the switch failed and was undone
		if err != nil {
			r.err = err
		} else {
			func() {
				defer func() {
					if v := recover(); v != nil {
						r.panicked, r.value = true, v
					}
				}()
				r.err = fn()
			}()
			clean = restore() == nil
		}
		if clean {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.value) // in the caller's goroutine, where its recovery applies
	}
	return r.err
}

// switchCreds switches the calling (locked) thread to uid/gid and checks that
// it took. It returns the function that switches back. On an error, restore is
// nil when the thread is root's again, and non-nil when switching back failed
// too: the thread must then stay locked and die with its goroutine.
func switchCreds(uid, gid int) (restore func() error, err error) {
	groups, err := unix.Getgroups()
	if err != nil {
		return nil, fmt.Errorf("maildir: getgroups: %w", err)
	}
	// Root's groups (0 among them, often) must not grant access the user does
	// not have; setgroups needs CAP_SETGID, so it goes first and back last.
	if err := unix.Setgroups([]int{gid}); err != nil {
		return nil, fmt.Errorf("maildir: setgroups %d: %w", gid, err)
	}
	oldGID, _ := unix.SetfsgidRetGid(gid)
	oldUID, _ := unix.SetfsuidRetUid(uid)
	restore = func() error {
		// fsuid first: going back to 0 also gives back the filesystem
		// capabilities (CAP_DAC_OVERRIDE, CAP_CHOWN …) the switch dropped.
		unix.SetfsuidRetUid(oldUID)
		unix.SetfsgidRetGid(oldGID)
		gerr := unix.Setgroups(groups)
		if u, _ := unix.SetfsuidRetUid(oldUID); u != oldUID {
			return fmt.Errorf("maildir: fsuid stays %d, not %d", u, oldUID)
		}
		if g, _ := unix.SetfsgidRetGid(oldGID); g != oldGID {
			return fmt.Errorf("maildir: fsgid stays %d, not %d", g, oldGID)
		}
		return gerr
	}
	// setfsuid/setfsgid report no failure, only the previous value: setting
	// again returns the current one.
	u, _ := unix.SetfsuidRetUid(uid)
	g, _ := unix.SetfsgidRetGid(gid)
	if u != uid || g != gid {
		err = fmt.Errorf("maildir: switching to uid %d gid %d left fsuid %d fsgid %d", uid, gid, u, g)
	} else if err = checkNoFSCaps(); err != nil {
		err = fmt.Errorf("maildir: as uid %d: %w", uid, err)
	}
	if err != nil {
		if rerr := restore(); rerr != nil {
			return restore, fmt.Errorf("%w (and switching back failed: %v)", err, rerr)
		}
		return nil, err
	}
	return restore, nil
}

// fsCaps are the capabilities that would let the thread bypass the checks the
// switch is for. The kernel drops them from a thread whose fsuid leaves 0,
// unless the securebit SECBIT_NO_SETUID_FIXUP says otherwise: so look.
const fsCaps = 1<<unix.CAP_CHOWN | 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH | 1<<unix.CAP_FOWNER

func checkNoFSCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3, Pid: int32(unix.Gettid())}
	var data [2]unix.CapUserData // version 3 fills two
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if data[0].Effective&fsCaps != 0 {
		return fmt.Errorf("filesystem capabilities still effective (%#x)", data[0].Effective&fsCaps)
	}
	return nil
}
