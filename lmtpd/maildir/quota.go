package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Maildir++ quota (the "maildirsize" file, Dovecot's quota backend "maildir"):
// the first line holds the limits ("1024S" or "1024S,10C"), every further line a
// "<bytes> <count>" delta. When the file is missing or grows past 5120 bytes it is
// recalculated from the folders, as the Maildir++ spec says.

const maildirsizeMax = 5120

var quotaMu sync.Mutex

func limitLine(mb Mailbox) string {
	s := strconv.FormatInt(mb.QuotaBytes, 10) + "S"
	if mb.QuotaCount > 0 {
		s += "," + strconv.FormatInt(mb.QuotaCount, 10) + "C"
	}
	return s
}

// Usage returns the bytes and messages counted against mb's quota.
// It may rewrite maildirsize, so as Deliver it runs with the user's credentials
// when root gives the user their files.
func Usage(mb Mailbox) (bytes, count int64, err error) {
	quotaMu.Lock()
	defer quotaMu.Unlock()
	base, err := boundary(plainFS, mb)
	if err != nil {
		return 0, 0, err
	}
	err = withMailbox(mb, base, func(fs *fsys) (err error) {
		bytes, count, err = usage(fs, mb)
		return err
	})
	return bytes, count, err
}

func usage(fs *fsys, mb Mailbox) (int64, int64, error) {
	path := filepath.Join(mb.Root, "maildirsize")
	// O_NOFOLLOW: a symlink is no maildirsize of ours (and as the user, the
	// file it names may well be unreadable): recalculate, replacing it. So
	// for a FIFO or the like.
	data, err := fs.readFile(path, syscall.O_NOFOLLOW)
	if err == nil && len(data) <= maildirsizeMax {
		if limits, b, c, ok := parseMaildirsize(data); ok && limits == limitLine(mb) {
			return b, c, nil
		}
	} else if err != nil && !os.IsNotExist(err) && !errors.Is(err, syscall.ELOOP) && !errors.Is(err, errNotRegular) {
		return 0, 0, classify(err)
	}
	return recalc(fs, mb)
}

// parseMaildirsize returns the limit line and the summed "<bytes> <count>" lines;
// ok is false for anything malformed (the caller then recalculates).
func parseMaildirsize(data []byte) (limits string, b, c int64, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() {
		return "", 0, 0, false
	}
	limits = sc.Text()
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return "", 0, 0, false
		}
		x, e1 := strconv.ParseInt(f[0], 10, 64)
		y, e2 := strconv.ParseInt(f[1], 10, 64)
		if e1 != nil || e2 != nil {
			return "", 0, 0, false
		}
		b, c = b+x, c+y
	}
	if sc.Err() != nil || !bytes.HasPrefix(data, []byte(limits+"\n")) {
		return "", 0, 0, false
	}
	return limits, b, c, true
}

// recalc scans every folder's cur/ and new/ (S= from the name when present) and
// rewrites maildirsize atomically.
func recalc(fs *fsys, mb Mailbox) (int64, int64, error) {
	var b, c int64
	names, err := fs.readDirNames(mb.Root)
	if err != nil && !os.IsNotExist(err) {
		return 0, 0, classify(err)
	}
	dirs := []string{mb.Root}
	for _, name := range names {
		if !strings.HasPrefix(name, ".") || name == "." || name == ".." || name == ".Trash" {
			continue
		}
		if st, err := fs.stat(filepath.Join(mb.Root, name), false); err == nil && isDir(st) {
			dirs = append(dirs, filepath.Join(mb.Root, name))
		}
	}
	for _, d := range dirs {
		for _, sub := range []string{"cur", "new"} {
			dir := filepath.Join(d, sub)
			files, _ := fs.readDirNames(dir)
			for _, name := range files {
				if n, ok := sizeFromName(name); ok {
					b += n
				} else if st, err := fs.stat(filepath.Join(dir, name), false); err == nil && isRegular(st) {
					b += st.Size
				}
				c++
			}
		}
	}
	content := fmt.Sprintf("%s\n%d %d\n", limitLine(mb), b, c)
	path := filepath.Join(mb.Root, "maildirsize")
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := writeNew(fs, mb, tmp, []byte(content), false); err != nil {
		return 0, 0, classify(err)
	}
	if err := fs.rename(tmp, path); err != nil {
		fs.remove(tmp)
		return 0, 0, classify(err)
	}
	return b, c, nil
}

func sizeFromName(name string) (int64, bool) {
	i := strings.Index(name, ",S=")
	if i < 0 {
		return 0, false
	}
	s := name[i+3:]
	if j := strings.IndexAny(s, ",:"); j >= 0 {
		s = s[:j]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// checkQuota fails with ErrQuota when size more bytes (one more message) would
// exceed mb's limits. Without limits it does nothing (no maildirsize is kept).
func checkQuota(fs *fsys, mb Mailbox, size int64) error {
	if mb.QuotaBytes <= 0 && mb.QuotaCount <= 0 {
		return nil
	}
	quotaMu.Lock()
	defer quotaMu.Unlock()
	b, c, err := usage(fs, mb)
	if err != nil {
		return err
	}
	if mb.QuotaBytes > 0 && b+size > mb.QuotaBytes {
		return fmt.Errorf("%w: %d+%d bytes > limit %d", ErrQuota, b, size, mb.QuotaBytes)
	}
	if mb.QuotaCount > 0 && c+1 > mb.QuotaCount {
		return fmt.Errorf("%w: %d messages = limit %d", ErrQuota, c, mb.QuotaCount)
	}
	return nil
}

// addQuota appends the delta line for one delivered message (O_APPEND keeps
// concurrent writers' lines whole).
func addQuota(fs *fsys, mb Mailbox, size int64) {
	if mb.QuotaBytes <= 0 && mb.QuotaCount <= 0 {
		return
	}
	quotaMu.Lock()
	defer quotaMu.Unlock()
	// O_NOFOLLOW: root's lmtpd must not append to what a user's symlink names.
	f, err := fs.open(filepath.Join(mb.Root, "maildirsize"), os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if !os.IsNotExist(err) {
			return
		}
		recalc(fs, mb) // the new file already counts the message
		return
	}
	fmt.Fprintf(f, "%d 1\n", size)
	f.Close()
}
