package maildir

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// maxKeywords is what fits in the Maildir info letters a..z.
const maxKeywords = 26

var kwMu sync.Mutex // serialises dovecot-keywords updates within this process

// keywordLetters maps IMAP keywords to the letters recorded in dir/dovecot-keywords
// ("<idx> <name>" lines, idx 0 = 'a'), adding missing ones. The file is replaced by
// rename so Dovecot never reads a torn file. Keywords that no longer fit (more than
// 26 in the folder) are dropped: losing a keyword is better than losing the message.
func (w *Writer) keywordLetters(mb Mailbox, dir string, kws []string) ([]byte, error) {
	kwMu.Lock()
	defer kwMu.Unlock()
	path := filepath.Join(dir, "dovecot-keywords")
	names := make([]string, maxKeywords)
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, classify(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		idx, name, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i < 0 || i >= maxKeywords || name == "" {
			continue
		}
		names[i] = name
	}
	var letters []byte
	changed := false
	for _, kw := range kws {
		if !validKeyword(kw) {
			continue
		}
		found := -1
		free := -1
		for i, n := range names {
			if strings.EqualFold(n, kw) {
				found = i
				break
			}
			if n == "" && free < 0 {
				free = i
			}
		}
		if found < 0 && free >= 0 {
			names[free], found, changed = kw, free, true
		}
		if found >= 0 {
			letters = append(letters, byte('a'+found))
		}
	}
	if changed {
		var b bytes.Buffer
		for i, n := range names {
			if n != "" {
				fmt.Fprintf(&b, "%d %s\n", i, n)
			}
		}
		tmp := path + ".tmp" + strconv.Itoa(w.pid)
		if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
			os.Remove(tmp)
			return nil, classify(err)
		}
		if mb.Chown {
			os.Chown(tmp, mb.UID, mb.GID)
		}
		if err := os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return nil, classify(err)
		}
	}
	return letters, nil
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
