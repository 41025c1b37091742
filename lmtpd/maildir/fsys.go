package maildir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// fsys does the file operations of one delivery. Paths stay absolute throughout
// the package (and in its errors); one at or below base is resolved from the
// directory opened at base (openat, mkdirat, renameat …) instead of from "/".
//
// Why: a delivery runs with the user's filesystem credentials (see
// inMailbox), and base is the boundary between root's directories and the
// user's (see boundary). Root opens base before the switch; from there on the
// kernel checks every lookup and write as the user, symlinks included (one to an
// absolute path starts again at "/", as the user). The directories above base
// are not the user's business: the user needs no search permission on them, as
// with a 0700 /var/vmail — or the 0700 temp directories of the tests.
//
// The zero base (plainFS) resolves every path as given, as the os package does.
type fsys struct {
	dir  int    // descriptor of base, or AT_FDCWD
	base string // cleaned; "" for plainFS
}

// plainFS resolves paths as they are, with the caller's credentials: the
// levels above the boundary, and the exported helpers that run outside a
// delivery.
var plainFS = &fsys{dir: unix.AT_FDCWD}

// openFsys opens dir (following symlinks: it is not the user's to swap) as the
// base of an fsys; close it when done.
func openFsys(dir string) (*fsys, error) {
	dir = filepath.Clean(dir)
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &fsys{dir: fd, base: dir}, nil
}

func (f *fsys) close() {
	if f.dir != unix.AT_FDCWD {
		unix.Close(f.dir)
	}
}

// at returns the directory descriptor and name to hand an *at system call for p.
func (f *fsys) at(p string) (int, string) {
	if f.base == "" {
		return unix.AT_FDCWD, p
	}
	if p == f.base {
		return f.dir, "."
	}
	if rel, ok := strings.CutPrefix(p, strings.TrimSuffix(f.base, "/")+"/"); ok && rel != "" {
		return f.dir, rel
	}
	return unix.AT_FDCWD, p
}

func ignoringEINTR[T any](fn func() (T, error)) (T, error) {
	for {
		v, err := fn()
		if !errors.Is(err, unix.EINTR) {
			return v, err
		}
	}
}

func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: p, Err: err}
}

func linkErr(op, a, b string, err error) error {
	if err == nil {
		return nil
	}
	return &os.LinkError{Op: op, Old: a, New: b, Err: err}
}

// open is os.OpenFile for a regular file or a directory, which is all this
// package opens. The descriptor is a blocking one, so every read, write and
// sync on the *os.File is a plain system call on the calling thread.
//
// The open itself never blocks: a FIFO the user put where a control file
// belongs (maildirsize, dovecot-keywords, maildirfolder) would wait for a
// writer or reader for ever, holding the delivery and its thread. So it is
// opened O_NONBLOCK, anything but a regular file or a directory is refused
// with errNotRegular, and O_NONBLOCK is cleared again.
func (f *fsys) open(p string, flag int, perm os.FileMode) (*os.File, error) {
	d, rel := f.at(p)
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Openat(d, rel, flag|unix.O_CLOEXEC|unix.O_NONBLOCK, uint32(perm.Perm()))
	})
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	if err == nil && !isRegular(st) && !isDir(st) {
		err = errNotRegular
	}
	if err == nil {
		err = unix.SetNonblock(fd, false)
	}
	if err != nil {
		unix.Close(fd)
		return nil, pathErr("open", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// errNotRegular: what open found is neither a regular file nor a directory.
var errNotRegular = errors.New("not a regular file or directory")

// stat is os.Stat (os.Lstat without follow).
func (f *fsys) stat(p string, follow bool) (unix.Stat_t, error) {
	d, rel := f.at(p)
	flags := 0
	if !follow {
		flags = unix.AT_SYMLINK_NOFOLLOW
	}
	var st unix.Stat_t
	_, err := ignoringEINTR(func() (struct{}, error) { return struct{}{}, unix.Fstatat(d, rel, &st, flags) })
	return st, pathErr("stat", p, err)
}

func isDir(st unix.Stat_t) bool     { return st.Mode&unix.S_IFMT == unix.S_IFDIR }
func isRegular(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFREG }
func mtime(st unix.Stat_t) time.Time {
	return time.Unix(st.Mtim.Unix())
}

func (f *fsys) mkdir(p string, perm os.FileMode) error {
	d, rel := f.at(p)
	return pathErr("mkdir", p, unix.Mkdirat(d, rel, uint32(perm.Perm())))
}

func (f *fsys) chmod(p string, perm os.FileMode) error {
	d, rel := f.at(p)
	return pathErr("chmod", p, unix.Fchmodat(d, rel, uint32(perm.Perm()), 0))
}

func (f *fsys) lchown(p string, uid, gid int) error {
	d, rel := f.at(p)
	return pathErr("lchown", p, unix.Fchownat(d, rel, uid, gid, unix.AT_SYMLINK_NOFOLLOW))
}

// remove removes a file (never a directory: the package removes none).
func (f *fsys) remove(p string) error {
	d, rel := f.at(p)
	return pathErr("remove", p, unix.Unlinkat(d, rel, 0))
}

func (f *fsys) rename(a, b string) error {
	da, ra := f.at(a)
	db, rb := f.at(b)
	return linkErr("rename", a, b, unix.Renameat(da, ra, db, rb))
}

func (f *fsys) link(a, b string) error {
	da, ra := f.at(a)
	db, rb := f.at(b)
	return linkErr("link", a, b, unix.Linkat(da, ra, db, rb, 0))
}

func (f *fsys) chtimes(p string, t time.Time) error {
	d, rel := f.at(p)
	ts := unix.NsecToTimespec(t.UnixNano())
	return pathErr("chtimes", p, unix.UtimesNanoAt(d, rel, []unix.Timespec{ts, ts}, 0))
}

// readFile is os.ReadFile; flag adds open flags (O_NOFOLLOW).
func (f *fsys) readFile(p string, flag int) ([]byte, error) {
	fh, err := f.open(p, os.O_RDONLY|flag, 0)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(fh)
}

// readDirNames lists a directory. (os.DirEntry.Info would stat by the absolute
// path, bypassing the base: use f.stat on each name instead.)
func (f *fsys) readDirNames(p string) ([]string, error) {
	fh, err := f.open(p, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return fh.Readdirnames(-1)
}
