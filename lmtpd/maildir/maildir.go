// Package maildir writes messages into Maildir++ folders the way Dovecot's LDA does
// (see ../shared/guides/protocols.md §4.2), so Dovecot can serve them unchanged:
//
//   - unique names "<sec>.M<usec>P<pid>.<host>,S=<size>,W=<vsize>", µs bumped when
//     two deliveries fall in the same microsecond;
//   - write tmp/<name>, fsync the file, rename into new/ (or cur/<name>:2,<flags>
//     when flags are set), fsync the directory — only then is the message safe;
//   - LF line endings on disk; W= counts the size with CRLF (IMAP RFC822.SIZE);
//   - Maildir++ folders ".Name" with a "maildirfolder" marker, IMAP keywords in
//     dovecot-keywords, the maildirsize quota file;
//   - further recipients on the same filesystem get a hard link to the same file.
package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Errors callers classify with errors.Is.
var (
	// ErrQuota: the message does not fit in the user's quota, the Maildir++ one or
	// the filesystem's (EDQUOT) (552 5.2.2 / 452 4.2.2).
	ErrQuota = errors.New("maildir: quota exceeded")
	// ErrNoSpace: the filesystem is full (ENOSPC) — temporary (452 4.3.1).
	ErrNoSpace = errors.New("maildir: no space left on device")
	// ErrNoMailbox: the folder does not exist and may not be created.
	ErrNoMailbox = errors.New("maildir: mailbox does not exist")
	// ErrBadName: the folder name is not acceptable.
	ErrBadName = errors.New("maildir: invalid mailbox name")
	// ErrCredentials: Mailbox.AsUser could not switch to the user's
	// credentials, so the function did not run — nothing is known about the
	// files it would have touched (temporary).
	ErrCredentials = errors.New("maildir: cannot take on the user's credentials")
)

// Options configure a Writer.
type Options struct {
	// Fsync syncs the file before the rename and the directory after it. Turning it
	// off trades durability for speed (Dovecot's mail_fsync = never).
	Fsync bool
	// HardLink lets further recipients share one file (same filesystem only).
	HardLink bool
	// Hostname is the host part of file names (default os.Hostname, with "/" and ":"
	// escaped as Dovecot does).
	Hostname string
	// WrapWriter, if set, wraps the tmp file writer (tests inject failing writers to
	// simulate a full disk).
	WrapWriter func(io.Writer) io.Writer
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Mailbox is one user's Maildir root (the directory holding cur/new/tmp of INBOX).
type Mailbox struct {
	Root string
	// Home is the user's home: missing directories at or below it are created
	// 0700 and owned by the user (default: the parent of Root).
	Home string
	// UID/GID own every file and directory created when Chown is set.
	UID, GID int
	Chown    bool
	// QuotaBytes limits the Maildir++ quota (0 = no limit); QuotaCount limits messages.
	QuotaBytes int64
	QuotaCount int64
}

// Target says where one copy goes.
type Target struct {
	Folder string   // IMAP mailbox name; "" or "INBOX" is the root
	Flags  []string // IMAP flags (\Seen …) and keywords
	Create bool     // create the folder if missing
}

// Message is one message to deliver, already in LF form (see Normalize). After the
// first successful write it remembers the file so further copies can be links.
type Message struct {
	// parts are the message's bytes, written one after the other. A caller that
	// puts fields in front of a large message (lmtpd's trace fields, an edited
	// header) passes them as parts of their own beside the unchanged rest, so no
	// copy of the whole message is ever built only to be written out.
	parts [][]byte
	size  int64
	vsize int64
	first string // path of the first delivered copy
	base  string // unique base name shared by links
	owner [2]int // uid/gid of the first copy: links only go to the same owner
	// dirs are the folder directories holding a file named base (the first
	// copy and the links to it): a folder gets base once at most.
	dirs []string
}

// NewMessage wraps LF-normalised data: the message is the parts one after the
// other (one part, or a header and the body it goes in front of). The parts
// are not copied and must not change while the Message is in use.
func NewMessage(parts ...[]byte) *Message {
	m := &Message{parts: parts}
	for _, p := range parts {
		m.size += int64(len(p))
		m.vsize += int64(len(p) + bytes.Count(p, []byte{'\n'}))
	}
	return m
}

// Size is the physical size (S=), VSize the size with CRLF line ends (W=).
func (m *Message) Size() int64  { return m.size }
func (m *Message) VSize() int64 { return m.vsize }

// Bytes returns the whole message in one slice: the one part itself, else a
// copy of the parts joined.
func (m *Message) Bytes() []byte {
	if len(m.parts) == 1 {
		return m.parts[0]
	}
	return bytes.Join(m.parts, nil)
}

// Writer delivers messages. It is safe for concurrent use.
type Writer struct {
	opts    Options
	pid     int
	host    string // escaped, for file names
	sysHost string // gethostname(), as in Dovecot's dotlock files
	started time.Time

	mu       sync.Mutex
	lastSec  int64
	lastUsec int64
	cleaned  map[string]bool // maildir roots whose tmp/ was swept in this process

	lockTimeout time.Duration    // for a uidlist lock a live process holds (tests shorten it)
	syncHook    func(dir string) // called for every directory fsync (tests)
}

// New returns a Writer.
func New(opts Options) *Writer {
	h := opts.Hostname
	if h == "" {
		h, _ = os.Hostname()
		if h == "" {
			h = "localhost"
		}
	}
	h = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sys, _ := os.Hostname()
	return &Writer{opts: opts, pid: os.Getpid(), host: h, sysHost: sys, started: time.Now(), cleaned: map[string]bool{},
		lockTimeout: defaultUidlistLockTimeout}
}

// uniqueName returns "<sec>.M<usec>P<pid>.<host>", never the same twice in a process.
func (w *Writer) uniqueName() string {
	now := w.opts.Now()
	sec, usec := now.Unix(), int64(now.Nanosecond()/1000)
	w.mu.Lock()
	if sec < w.lastSec || (sec == w.lastSec && usec <= w.lastUsec) {
		sec, usec = w.lastSec, w.lastUsec+1
		if usec >= 1e6 {
			sec, usec = sec+1, 0
		}
	}
	w.lastSec, w.lastUsec = sec, usec
	w.mu.Unlock()
	return fmt.Sprintf("%d.M%dP%d.%s", sec, usec, w.pid, w.host)
}

// Deliver stores one copy of msg in mb at t and returns the final path.
func (w *Writer) Deliver(mb Mailbox, t Target, msg *Message) (string, error) {
	var final string
	err := w.inMailbox(mb, func(fs *fsys) (err error) {
		final, err = w.deliver(fs, mb, t, msg)
		return err
	})
	return final, err
}

// asUser says whether mb's file operations run with the user's credentials:
// when lmtpd is root and gives the user what it creates. Unprivileged, the
// process's own credentials are the only ones, as before.
func asUser(mb Mailbox) bool {
	return mb.Chown && mb.UID > 0 && os.Geteuid() == 0
}

// boundary returns the directory where root's part of a delivery into mb ends
// and the user's begins. Walking the Maildir's path from the top, it is the
// first directory that belongs to the user (the home, usually); the levels
// above it are root's (or another owner's), so a symlink found there is not the
// user's, and root may follow it. When a level is missing, the boundary is the
// first level to create that will be the user's (one inside the home, or the
// Maildir root): root makes it and the levels above it, as it always did —
// mkdir and Lchown never follow a symlink in the last element, and the levels
// above are not the user's to swap. Without the user's credentials (asUser
// false) the boundary is the Maildir root: everything is done as before.
//
// Everything inside the boundary — the Maildir root itself when the user made
// or owns a level above it, cur/new/tmp, folders, every file — is then done
// with the user's credentials, never root's (inMailbox).
func boundary(fs *fsys, mb Mailbox) (string, error) {
	root := filepath.Clean(mb.Root)
	if !asUser(mb) {
		return root, nil
	}
	home := mb.Home
	if home == "" {
		home = filepath.Dir(root)
	}
	var levels []string // top first, without "/"
	for p := root; p != filepath.Dir(p); p = filepath.Dir(p) {
		levels = append(levels, p)
	}
	slices.Reverse(levels)
	for i, p := range levels {
		st, err := fs.stat(p, true)
		switch {
		case errors.Is(err, os.ErrNotExist):
			for _, q := range levels[i:] {
				if within(q, home) || within(q, root) {
					return q, nil
				}
			}
		case err != nil:
			return "", classify(err)
		case !isDir(st):
			return "", fmt.Errorf("maildir: %s is not a directory", p)
		case int(st.Uid) == mb.UID:
			return p, nil
		}
	}
	return root, nil
}

// inMailbox creates the directories up to mb's boundary (with the caller's,
// root's, credentials) and runs fn on the boundary's fsys with the user's
// (runAs) when asUser. An error there — EACCES or ELOOP from a symlink the user
// put in the Maildir, a failed switch — is a temporary failure (451).
func (w *Writer) inMailbox(mb Mailbox, fn func(*fsys) error) error {
	base, err := boundary(plainFS, mb)
	if err != nil {
		return err
	}
	made, err := mkdirParents(plainFS, mb, base)
	if err != nil {
		return err
	}
	if err := w.syncParents(plainFS, made); err != nil {
		return err
	}
	return withMailbox(mb, base, fn)
}

// AsUser runs fn with the filesystem credentials mb's deliveries run with:
// the user's when lmtpd is root and gives the user what it creates (asUser),
// the process's own otherwise. It is for reading, outside a delivery, what the
// user controls as the user could (Dovecot reads a user's Sieve scripts with
// the user's privileges): a symlink the user made to a root-only file then
// fails with EACCES instead of root reading it. Paths are resolved from "/" as
// the user, so the user needs search permission on every level.
//
// fn's error is returned as it is; one wrapping ErrCredentials means the
// switch failed and fn did not run. As with runAs, fn runs on a thread of its
// own and must not start goroutines that touch the file system. A descriptor
// fn opens stays usable after it returns: the kernel checks access at open.
func (mb Mailbox) AsUser(fn func() error) error {
	if !asUser(mb) {
		return fn()
	}
	ran := false
	err := runAs(mb.UID, mb.GID, func() error {
		ran = true
		return fn()
	})
	if err != nil && !ran {
		return fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	return err
}

// withMailbox runs fn on the fsys of mb's (existing) boundary base, as the user
// when asUser.
func withMailbox(mb Mailbox, base string, fn func(*fsys) error) error {
	fs, err := openFsys(base)
	if err != nil {
		return classify(err)
	}
	defer fs.close()
	if !asUser(mb) {
		return fn(fs)
	}
	return runAs(mb.UID, mb.GID, func() error { return fn(fs) })
}

// deliver is Deliver inside the mailbox: fs is rooted at the boundary, and
// with asUser this runs with the user's credentials.
func (w *Writer) deliver(fs *fsys, mb Mailbox, t Target, msg *Message) (string, error) {
	dir, err := w.folderDir(fs, mb, t.Folder, t.Create)
	if err != nil {
		return "", err
	}
	w.sweepTmp(fs, dir)
	if err := checkQuota(fs, mb, msg.Size()); err != nil {
		return "", err
	}
	flags, err := w.flagSuffix(fs, mb, dir, t.Flags)
	if err != nil {
		return "", err
	}
	sub := "new"
	if flags != "" {
		sub = "cur"
	}
	var final string
	// Never a second link into a folder that has one (fileinto "a.b" and
	// "a/b", a keep into the +detail mailbox beside a fileinto :flags there):
	// with other flags it would go to cur/ beside the new/ one under the same
	// base name, which Dovecot keys dovecot-uidlist by — it skips the second
	// file as a duplicate and, once they are hard links of some age, unlinks
	// it. A copy of its own gets a name of its own.
	if msg.first != "" && w.opts.HardLink && msg.owner == [2]int{mb.UID, mb.GID} && !slices.Contains(msg.dirs, dir) {
		final = filepath.Join(dir, sub, msg.base+flags)
		// As the user: the first copy must be theirs to link to (the owner check
		// of fs.protected_hardlinks), and is, the uid and gid being the same.
		if err := fs.link(msg.first, final); err == nil {
			if err := w.syncDir(fs, filepath.Join(dir, sub)); err != nil {
				fs.remove(final)
				return "", classify(err)
			}
			msg.dirs = append(msg.dirs, dir)
			addQuota(fs, mb, msg.Size())
			return final, nil
		}
		// EXDEV, EEXIST (same user twice), EMLINK …: fall back to a fresh copy.
	}
	base := w.uniqueName() + fmt.Sprintf(",S=%d,W=%d", msg.Size(), msg.VSize())
	final = filepath.Join(dir, sub, base+flags)
	if err := w.writeFile(fs, mb, filepath.Join(dir, "tmp", base), final, msg.parts); err != nil {
		return "", err
	}
	if msg.first == "" {
		msg.first, msg.base, msg.owner, msg.dirs = final, base, [2]int{mb.UID, mb.GID}, []string{dir}
	}
	addQuota(fs, mb, msg.Size())
	return final, nil
}

// writeFile is the durable write of the parts one after the other (the same
// bytes as one write of them joined): tmp → fsync → rename → fsync dir. On any
// error the tmp file is removed, so nothing half-written is ever visible in new/
// or left in tmp/.
func (w *Writer) writeFile(fs *fsys, mb Mailbox, tmp, final string, parts [][]byte) (err error) {
	f, err := fs.open(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return classify(err)
	}
	defer func() {
		if err != nil {
			f.Close()
			fs.remove(tmp)
		}
	}()
	var dst io.Writer = f
	if w.opts.WrapWriter != nil {
		dst = w.opts.WrapWriter(f)
	}
	for _, p := range parts {
		if _, err = dst.Write(p); err != nil {
			return classify(err)
		}
	}
	// As the user the file is theirs already: the fchown (permitted, to their
	// own uid and gid) only matters under a set-group-ID directory, whose group
	// new files inherit — as root's lmtpd always gave them mb.GID, so does this.
	if mb.Chown {
		if err = f.Chown(mb.UID, mb.GID); err != nil {
			return fmt.Errorf("maildir: chown %s: %w", tmp, err)
		}
	}
	if w.opts.Fsync {
		if err = f.Sync(); err != nil {
			return classify(err)
		}
	}
	if err = f.Close(); err != nil {
		return classify(err)
	}
	if err = fs.rename(tmp, final); err != nil {
		return classify(err)
	}
	if err = w.syncDir(fs, filepath.Dir(final)); err != nil {
		// The rename happened but is not durable: take it back so the client retries
		// and we never answer 250 for a message a crash could lose.
		fs.remove(final)
		return classify(err)
	}
	return nil
}

func (w *Writer) syncDir(fs *fsys, dir string) error {
	if !w.opts.Fsync {
		return nil
	}
	if w.syncHook != nil {
		w.syncHook(dir)
	}
	d, err := fs.open(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// classify maps a full filesystem to ErrNoSpace, a filesystem quota to ErrQuota,
// and wraps the rest.
func classify(err error) error {
	if errors.Is(err, syscall.EDQUOT) {
		// The user's disk quota (with mail owned by the user), which Dovecot reports
		// as "Quota exceeded", not as a full disk (protocols.md §4.2).
		return fmt.Errorf("%w: %v", ErrQuota, err)
	}
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	}
	if errors.Is(err, ErrNoSpace) || errors.Is(err, ErrQuota) {
		return err
	}
	return fmt.Errorf("maildir: %w", err)
}

// folderDir returns the directory of folder in mb, creating the Maildir root (always)
// and the folder (when create) as needed.
func (w *Writer) folderDir(fs *fsys, mb Mailbox, folder string, create bool) (string, error) {
	if err := w.ensureMaildir(fs, mb, mb.Root, false); err != nil {
		return "", err
	}
	name, err := FolderPath(folder)
	if err != nil {
		return "", err
	}
	if name == "" {
		return mb.Root, nil
	}
	dir := filepath.Join(mb.Root, name)
	if _, err := fs.stat(filepath.Join(dir, "cur"), true); err != nil && !create {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return "", fmt.Errorf("%w: %q", ErrNoMailbox, folder)
		}
		// EACCES, ELOOP: a folder the user made unreachable is no missing
		// folder to fall back to INBOX for, but a failure to report.
		return "", classify(err)
	}
	// Also when cur exists: another delivery may be creating the folder right
	// now (cur made, tmp not yet). ensureMaildir returns at once once tmp, made
	// last, is there, and otherwise completes the folder.
	if err := w.ensureMaildir(fs, mb, dir, true); err != nil {
		return "", err
	}
	return dir, nil
}

// ensureMaildir creates dir/{cur,new,tmp} (and the maildirfolder marker for folders;
// never in the root — the marker there breaks Maildir++ quota).
func (w *Writer) ensureMaildir(fs *fsys, mb Mailbox, dir string, folder bool) error {
	if _, err := fs.stat(filepath.Join(dir, "tmp"), true); err == nil {
		return nil
	}
	made, err := mkdirParents(fs, mb, dir)
	if err != nil {
		return err
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		p := filepath.Join(dir, sub)
		// The user owns them only when lmtpd may give files away (root): an
		// unprivileged lmtpd cannot chown, and owns them already.
		if err := mkdirOwned(fs, mb, p, 0o700, mb.Chown); err != nil {
			return err
		}
		made = append(made, p)
	}
	if folder {
		m := filepath.Join(dir, "maildirfolder")
		f, err := fs.open(m, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil && !errors.Is(err, syscall.ELOOP) {
			return classify(err)
		}
		if err == nil {
			// fchown, never chown by name: a user's symlink there must not hand
			// root's lmtpd the file it points to.
			if mb.Chown {
				if err := f.Chown(mb.UID, mb.GID); err != nil {
					f.Close()
					return fmt.Errorf("maildir: chown %s: %w", m, err)
				}
			}
			f.Close()
		}
		made = append(made, m)
	}
	return w.syncParents(fs, made)
}

// syncParents makes the names of new directories (and files) durable: fsyncing
// new/ after the rename only saves the message's entry, and after a crash a
// message in a new/ whose own entry in the Maildir (or the Maildir's in the home)
// was lost is gone although it was answered 250. Every parent is synced, also
// when a concurrent delivery won the mkdir: this delivery answers on its own.
func (w *Writer) syncParents(fs *fsys, made []string) error {
	var dirs []string
	seen := map[string]bool{}
	for _, p := range made {
		if d := filepath.Dir(p); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	// Deepest first, so a parent is synced after the entries below it exist.
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], string(filepath.Separator)) > strings.Count(dirs[j], string(filepath.Separator))
	})
	for _, d := range dirs {
		if err := w.syncDir(fs, d); err != nil {
			return classify(err)
		}
	}
	return nil
}

// mkdirParents creates dir and its missing ancestors. Directories inside the
// user's home (mb.Home, by default the Maildir's parent) are 0700 and belong to the
// user; a missing level above the home (a per-domain directory, say) gets the mode
// and owner of its nearest existing ancestor, so it never locks other users out.
// It returns the directories it made (or found made by a concurrent delivery).
// Inside a mailbox (fs rooted at the boundary) it never looks above fs.base: the
// levels up to the boundary are root's to make, before (inMailbox).
func mkdirParents(fs *fsys, mb Mailbox, dir string) ([]string, error) {
	home := mb.Home
	if home == "" {
		home = filepath.Dir(mb.Root)
	}
	var missing []string
	var parent *unix.Stat_t
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		st, err := fs.stat(p, true)
		if err == nil {
			if !isDir(st) {
				return nil, fmt.Errorf("maildir: %s is not a directory", p)
			}
			parent = &st
			break
		}
		if !errors.Is(err, os.ErrNotExist) || p == fs.base {
			return nil, classify(err)
		}
		if p == filepath.Dir(p) {
			break
		}
		missing = append(missing, p)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if within(p, home) || within(p, mb.Root) {
			if err := mkdirOwned(fs, mb, p, 0o700, mb.Chown); err != nil {
				return nil, err
			}
			continue
		}
		mode, uid, gid := os.FileMode(0o755), -1, -1
		if parent != nil {
			mode = os.FileMode(parent.Mode).Perm()
			if os.Geteuid() == 0 {
				uid, gid = int(parent.Uid), int(parent.Gid)
			}
		}
		if err := fs.mkdir(p, mode); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue // a concurrent delivery made it
			}
			return nil, classify(err)
		}
		fs.chmod(p, mode) // exactly the parent's mode, whatever the umask
		if uid >= 0 {
			err := fs.lchown(p, uid, gid)
			if err != nil && fs.base != "" && asUser(mb) && errors.Is(err, syscall.EPERM) {
				// Inside the boundary, as the user (a parent of the home that is
				// the user's, say a vmail-owned /var/vmail): the parent's owner is
				// the user, but its group may be one the user is not in. The new
				// level then keeps the user's group.
				err = nil
			}
			if err != nil {
				return nil, fmt.Errorf("maildir: chown %s: %w", p, err)
			}
		}
	}
	return missing, nil
}

func within(p, dir string) bool {
	dir = filepath.Clean(dir)
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}

// mkdirOwned creates one directory with mode, owned by the user when chown is set.
// An existing directory is left as it is.
func mkdirOwned(fs *fsys, mb Mailbox, p string, mode os.FileMode, chown bool) error {
	if err := fs.mkdir(p, mode); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return classify(err)
	}
	if chown {
		// Lchown: the user may have put a symlink in the new directory's place
		// since the Mkdir; chown would give them its target. (As the user, a
		// no-op but under a set-group-ID parent: see writeFile.)
		if err := fs.lchown(p, mb.UID, mb.GID); err != nil {
			return fmt.Errorf("maildir: chown %s: %w", p, err)
		}
	}
	return nil
}

// writeNew writes data to a new file path (a tmp name beside the file it is
// renamed over), owned by the user when mb.Chown. Whatever is at path (a
// crashed run's leftover, or a symlink the user put there, which root's
// os.WriteFile and os.Chown would follow into /etc) is removed first, and the
// file is created with O_EXCL|O_NOFOLLOW and chowned through its descriptor.
// With sync the file is fsynced before it is closed.
func writeNew(fs *fsys, mb Mailbox, path string, data []byte, sync bool) error {
	fs.remove(path)
	f, err := fs.open(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if mb.Chown {
		f.Chown(mb.UID, mb.GID)
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fs.remove(path)
	}
	return err
}

// FolderPath maps an IMAP mailbox name to its Maildir++ directory name relative to
// the root: "INBOX" → "", "Lists" → ".Lists", "a/b" or "a.b" → ".a.b"; non-ASCII
// names are stored in IMAP modified UTF-7 like Dovecot's default layout.
func FolderPath(name string) (string, error) {
	if name == "" || strings.EqualFold(name, "INBOX") {
		return "", nil
	}
	if len(name) > 255 {
		return "", fmt.Errorf("%w: longer than 255 bytes", ErrBadName)
	}
	if len(name) > 6 && strings.EqualFold(name[:6], "INBOX.") || len(name) > 6 && strings.EqualFold(name[:6], "INBOX/") {
		name = name[6:]
	}
	name = strings.ReplaceAll(name, "/", ".")
	for _, part := range strings.Split(name, ".") {
		if part == "" {
			return "", fmt.Errorf("%w: %q has an empty hierarchy level", ErrBadName, name)
		}
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("%w: control character in %q", ErrBadName, name)
		}
	}
	dir := "." + EncodeMUTF7(name)
	if len(dir) > nameMax {
		// One directory for the whole hierarchy: its name, with the dot and
		// modified UTF-7 (up to 8/3 of the UTF-8 bytes), must fit the file
		// system's name limit, or the mkdir fails with ENAMETOOLONG on every
		// retry instead of the fileinto failing (keep in INBOX).
		return "", fmt.Errorf("%w: %q is longer than %d bytes in the Maildir", ErrBadName, name, nameMax)
	}
	return dir, nil
}

// nameMax is NAME_MAX of Linux file systems: the longest directory entry.
const nameMax = 255

// FolderExists reports whether the IMAP mailbox name exists in mb (Sieve's
// mailboxexists). Like a delivery, it looks with the user's credentials: root
// following the user's symlinks would tell the user what exists where they
// cannot look.
func FolderExists(mb Mailbox, name string) bool {
	p, err := FolderPath(name)
	if err != nil {
		return false
	}
	base, err := boundary(plainFS, mb)
	if err != nil {
		return false
	}
	err = withMailbox(mb, base, func(fs *fsys) error {
		_, err := fs.stat(filepath.Join(mb.Root, p, "cur"), true)
		return err
	})
	return err == nil
}

// flagSuffix returns ":2,<flags>" (empty without flags), mapping keywords to letters
// through dovecot-keywords in dir.
func (w *Writer) flagSuffix(fs *fsys, mb Mailbox, dir string, flags []string) (string, error) {
	if len(flags) == 0 {
		return "", nil
	}
	var std []byte
	var kws []string
	for _, f := range flags {
		switch strings.ToLower(f) {
		case `\seen`:
			std = append(std, 'S')
		case `\answered`:
			std = append(std, 'R')
		case `\flagged`:
			std = append(std, 'F')
		case `\deleted`:
			std = append(std, 'T')
		case `\draft`:
			std = append(std, 'D')
		case `\recent`, "":
		default:
			if !strings.HasPrefix(f, `\`) {
				kws = append(kws, f)
			}
		}
	}
	if len(kws) > 0 {
		letters, err := w.keywordLetters(fs, mb, dir, kws)
		if err != nil {
			return "", err
		}
		std = append(std, letters...)
	}
	if len(std) == 0 {
		return "", nil
	}
	sort.Slice(std, func(i, j int) bool { return std[i] < std[j] })
	out := std[:0]
	for i, c := range std {
		if i == 0 || c != std[i-1] {
			out = append(out, c)
		}
	}
	return ":2," + string(out), nil
}

// Clean removes stale files from the tmp/ of a Maildir or Maildir++ folder
// directory: anything older than 36 hours (as Dovecot) and files this host wrote
// before this process started (a killed predecessor's half-written deliveries).
func (w *Writer) Clean(folderDir string) int {
	return w.clean(plainFS, folderDir)
}

func (w *Writer) clean(fs *fsys, folderDir string) int {
	dir := filepath.Join(folderDir, "tmp")
	names, err := fs.readDirNames(dir)
	if err != nil {
		return 0
	}
	n := 0
	ours := "P" + strconv.Itoa(w.pid) + "." + w.host
	for _, name := range names {
		st, err := fs.stat(filepath.Join(dir, name), false)
		if err != nil || !isRegular(st) {
			continue
		}
		old := time.Since(mtime(st)) > 36*time.Hour
		mine := strings.Contains(name, "."+w.host) && !strings.Contains(name, ours) &&
			mtime(st).Before(w.started) && !writerAlive(name)
		if old || mine {
			if fs.remove(filepath.Join(dir, name)) == nil {
				n++
			}
		}
	}
	return n
}

// writerAlive reports whether the process named by a "…P<pid>.…" tmp name still
// runs (another lmtpd on this host writing right now): its file is not stale.
func writerAlive(name string) bool {
	i := strings.Index(name, "P")
	if i < 0 {
		return false
	}
	j := strings.IndexByte(name[i:], '.')
	if j < 0 {
		return false
	}
	pid, err := strconv.Atoi(name[i+1 : i+j])
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// sweepTmp cleans dir's tmp/ on the first delivery into dir in this process, so a
// restart after a crash leaves no stale files behind in any folder it writes to.
func (w *Writer) sweepTmp(fs *fsys, dir string) {
	w.mu.Lock()
	done := w.cleaned[dir]
	if !done {
		if len(w.cleaned) >= maxSwept {
			clear(w.cleaned) // bounded memory; a second sweep is harmless
		}
		w.cleaned[dir] = true
	}
	w.mu.Unlock()
	if !done {
		w.clean(fs, dir)
	}
}

// maxSwept bounds the set of folder directories remembered as swept.
const maxSwept = 100000
