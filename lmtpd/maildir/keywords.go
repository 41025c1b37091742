package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxKeywords is what fits in the Maildir info letters a..z.
const maxKeywords = 26

// keywordLetters maps IMAP keywords to the letters recorded in dir/dovecot-keywords
// ("<idx> <name>" lines, idx 0 = 'a'). Known keywords need no lock. Adding one is
// done as Dovecot does it: holding the folder's dovecot-uidlist.lock (Dovecot only
// creates keywords under that lock, so neither side can give one letter two
// names), re-reading the file, replacing it by rename so it is never read torn,
// and making its mtime second grow (Dovecot re-reads the file only when st_mtime
// changes). Keywords that no longer fit (more than 26 in the folder) are dropped:
// losing a keyword is better than losing the message.
func (w *Writer) keywordLetters(fs *fsys, mb Mailbox, dir string, kws []string) ([]byte, error) {
	var valid []string
	for _, kw := range kws {
		if validKeyword(kw) {
			valid = append(valid, kw)
		}
	}
	if len(valid) == 0 {
		return nil, nil
	}
	// No process-wide mutex: the dotlock below also serialises this process's own
	// deliveries, and one folder's stuck lock must not hold up the others.
	path := filepath.Join(dir, "dovecot-keywords")
	names, _, err := readKeywords(fs, path)
	if err != nil {
		return nil, err
	}
	if letters, ok := lookupKeywords(names, valid); ok {
		return letters, nil
	}
	unlock, err := w.lockUidlist(fs, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	names, mtime, err := readKeywords(fs, path)
	if err != nil {
		return nil, err
	}
	changed := false
	for _, kw := range valid {
		if indexOf(names, kw) >= 0 {
			continue
		}
		if free := indexOf(names, ""); free >= 0 {
			names[free], changed = kw, true
		}
	}
	letters, _ := lookupKeywords(names, valid)
	if !changed {
		return letters, nil
	}
	var b bytes.Buffer
	for i, n := range names {
		if n != "" {
			fmt.Fprintf(&b, "%d %s\n", i, n)
		}
	}
	tmp := path + ".tmp" + strconv.Itoa(w.pid)
	// Durable before the message naming its letter is (as Dovecot fdatasyncs
	// it): after a crash, a message answered 250 with a letter the file no
	// longer names loses its keyword, or gets whichever one takes the letter
	// next.
	if err := writeNew(fs, mb, tmp, b.Bytes(), w.opts.Fsync); err != nil {
		return nil, classify(err)
	}
	if now := time.Now(); !mtime.IsZero() && now.Unix() <= mtime.Unix() {
		fs.chtimes(tmp, time.Unix(mtime.Unix()+1, 0))
	}
	if err := fs.rename(tmp, path); err != nil {
		fs.remove(tmp)
		return nil, classify(err)
	}
	if err := w.syncDir(fs, dir); err != nil {
		return nil, classify(err)
	}
	return letters, nil
}

// readKeywords parses dovecot-keywords; a missing file is an empty table.
func readKeywords(fs *fsys, path string) ([]string, time.Time, error) {
	names := make([]string, maxKeywords)
	f, err := fs.open(path, os.O_RDONLY, 0)
	if os.IsNotExist(err) {
		return names, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, classify(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, classify(err)
	}
	if err := parseKeywords(f, names); err != nil {
		return nil, time.Time{}, classify(err)
	}
	return names, st.ModTime(), nil
}

// parseKeywords fills names[idx] from "<idx> <name>" lines, skipping what does
// not parse (as Dovecot does).
func parseKeywords(r io.Reader, names []string) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		idx, name, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i < 0 || i >= len(names) || name == "" {
			continue
		}
		names[i] = name
	}
	return sc.Err()
}

// lookupKeywords returns the letters of kws, ok=false when one is not in names.
func lookupKeywords(names, kws []string) ([]byte, bool) {
	var letters []byte
	ok := true
	for _, kw := range kws {
		if i := indexOf(names, kw); i >= 0 {
			letters = append(letters, byte('a'+i))
		} else {
			ok = false
		}
	}
	return letters, ok
}

// indexOf finds name (case-insensitively, as Dovecot) or, for "", a free slot.
func indexOf(names []string, name string) int {
	for i, n := range names {
		if name == "" && n == "" || name != "" && strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// Dovecot's uidlist dotlock: stale after two minutes, or at once when its
// "<pid>:<host>" names a process on this host that is gone.
const uidlistLockStale = 2 * time.Minute

// defaultUidlistLockTimeout bounds the wait for a lock a live process holds.
const defaultUidlistLockTimeout = 10 * time.Second

// lockUidlist takes dir/dovecot-uidlist.lock (O_EXCL, like Dovecot's dotlock) and
// returns the function that releases it. Not getting it in time is a temporary
// failure.
func (w *Writer) lockUidlist(fs *fsys, dir string) (func(), error) {
	path := filepath.Join(dir, "dovecot-uidlist.lock")
	deadline := time.Now().Add(w.lockTimeout)
	for wait := 5 * time.Millisecond; ; {
		f, err := fs.open(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%d:%s", w.pid, w.sysHost) // Dovecot's "<pid>:<host>"
			f.Close()
			return func() { fs.remove(path) }, nil
		}
		if !os.IsExist(err) {
			return nil, classify(err)
		}
		if w.staleLock(fs, path) {
			fs.remove(path)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("maildir: %s held for more than %v", path, w.lockTimeout)
		}
		time.Sleep(wait)
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

func (w *Writer) staleLock(fs *fsys, path string) bool {
	st, err := fs.stat(path, true)
	if err != nil {
		return false // gone already: just retry
	}
	if time.Since(mtime(st)) > uidlistLockStale {
		return true
	}
	b, err := fs.readFile(path, 0)
	if err != nil {
		return false
	}
	pid, host, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	n, err := strconv.Atoi(pid)
	if !ok || err != nil || n <= 0 || host != w.sysHost {
		return false
	}
	err = syscall.Kill(n, 0)
	return errors.Is(err, syscall.ESRCH)
}

// validKeyword: an IMAP atom without atom-specials (RFC 3501 flag-keyword).
func validKeyword(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}
