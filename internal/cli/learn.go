package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/bayes"
)

func newLearnCmd(app *App) *cobra.Command {
	var asSpam, asHam, forget bool
	var user string
	c := &cobra.Command{
		Use:   "learn --spam|--ham|--forget FILE|DIR...",
		Short: "Train the Bayes classifier from files, Maildirs (cur/new) and mbox files",
		// Usage errors exit 2, like the missing mode below: exit 1 says a
		// file could not be read.
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, b := range []bool{asSpam, asHam, forget} {
				if b {
					n++
				}
			}
			if n != 1 {
				return &ExitError{Code: 2, Err: errors.New("give exactly one of --spam, --ham, --forget")}
			}
			ctx := cmd.Context()
			e, err := learningEngine(ctx, app)
			if err != nil {
				return err
			}
			mode := "spam"
			if asHam {
				mode = "ham"
			} else if forget {
				mode = "forget"
			}
			return runLearn(ctx, e, args, mode, user, app.Stdout, app.Stderr)
		},
	}
	c.SetFlagErrorFunc(usageFlagErr)
	c.Flags().BoolVar(&asSpam, "spam", false, "learn the messages as spam")
	c.Flags().BoolVar(&asHam, "ham", false, "learn the messages as ham")
	c.Flags().BoolVar(&forget, "forget", false, "remove the messages from Bayes")
	c.Flags().StringVar(&user, "user", "", "also train this recipient's table (with bayes.per_user): the address the milter classifies the user's mail under")
	return c
}

// learningEngine is the engine every way of training Bayes uses (learn,
// quarantine learn, release --learn-ham): with our authserv-ids, so the
// Authentication-Results our milter wrote is not learned as evidence.
func learningEngine(ctx context.Context, app *App) (*spam.Engine, error) {
	return spamEngine(ctx, app, true, spam.WithAuthservIDs(ownAuthservIDs(ctx, app)...))
}

// ownAuthservIDs are the authserv-ids our milter writes in
// Authentication-Results: the configured one, else Postfix's $myhostname
// (the milter's j macro), asked from postconf where Postfix is installed —
// often a fully qualified name where the host name is short — and the host
// name, which is $myhostname's default.
func ownAuthservIDs(ctx context.Context, app *App) []string {
	if cfg := app.Config(); cfg != nil && cfg.Milter.AuthservID != "" {
		return []string{cfg.Milter.AuthservID}
	}
	var ids []string
	if h := postfixMyhostname(ctx); h != "" {
		ids = append(ids, h)
	}
	if h, err := os.Hostname(); err == nil && h != "" && !slices.Contains(ids, h) {
		ids = append(ids, h)
	}
	return ids
}

// postfixMyhostname is `postconf -xh myhostname` (honouring MAIL_CONFIG), or
// "" without Postfix or its main.cf (postconf is not even started then: it
// may spend seconds resolving the host's name for defaults no one set).
func postfixMyhostname(ctx context.Context) string {
	dir := os.Getenv("MAIL_CONFIG")
	if dir == "" {
		dir = "/etc/postfix"
	}
	if _, err := os.Stat(filepath.Join(dir, "main.cf")); err != nil {
		return ""
	}
	bin := ""
	// $PATH, else the usual places (root's PATH may lack sbin).
	for _, name := range []string{"postconf", "/usr/sbin/postconf", "/usr/local/sbin/postconf"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// -x expands $mydomain and the like, as Postfix does for the j macro
	// (-h alone prints main.cf's text: "mx.$mydomain").
	out, err := exec.CommandContext(ctx, bin, "-xh", "myhostname").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// runLearn trains on every message found under paths. mode is spam, ham or
// forget. A path or file that cannot be read is reported on errOut and the
// run goes on; the summary follows, and the run fails (exit 1) if any could
// not be read. A store failure stops the run: everything after would fail
// too.
func runLearn(ctx context.Context, e *spam.Engine, paths []string, mode, user string, out, errOut io.Writer) error {
	var learned, skipped, failed int
	each := func(name string, raw []byte) error {
		msg, err := e.Parse(bytes.NewReader(raw))
		if err != nil {
			return err
		}
		defer msg.Close()
		switch mode {
		case "forget":
			err = e.Forget(ctx, msg, user)
		default:
			err = e.Learn(ctx, msg, mode == "spam", user)
		}
		switch {
		case err == nil:
			learned++
		case errors.Is(err, bayes.ErrAlreadyLearned), errors.Is(err, bayes.ErrNotLearned):
			skipped++
		default:
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	bad := func(name string, err error) {
		failed++
		fmt.Fprintf(errOut, "learn: %s: %v\n", name, err)
	}
	var stop error
	for _, p := range paths {
		if stop = walkMessages(p, each, bad); stop != nil {
			break
		}
	}
	fmt.Fprintf(out, "%s: %d message(s) processed, %d already done, %d unreadable\n", mode, learned, skipped, failed)
	switch {
	case stop != nil:
		return stop
	case failed > 0:
		return &ExitError{Code: 1, Err: fmt.Errorf("%d path(s) or file(s) could not be read", failed)}
	}
	return nil
}

// walkMessages calls fn for every message in path: a message file, an mbox
// file (first line "From "), a Maildir (its cur/ and new/, and those of its
// Maildir++ subfolders) or a directory tree of those. Unreadable entries,
// path itself included, go to bad; an error from fn stops the walk.
func walkMessages(path string, fn func(name string, raw []byte) error, bad func(string, error)) error {
	st, err := os.Stat(path)
	if err != nil {
		bad(path, err)
		return nil
	}
	if !st.IsDir() {
		return walkFile(path, fn, bad)
	}
	var files []string
	collectDir(path, &files, bad)
	for _, f := range files {
		if err := walkFile(f, fn, bad); err != nil {
			return err
		}
	}
	return nil
}

// dovecotFiles are the index and state files Dovecot keeps beside mail
// (their names without dots: the dotted ones are skipped anyway).
var dovecotFiles = map[string]bool{"dovecot-uidlist": true, "dovecot-keywords": true, "dovecot-uidvalidity": true,
	"maildirfolder": true, "subscriptions": true, "maildirsize": true}

// isDovecotFile reports a Dovecot (or Courier) state file: never a message.
func isDovecotFile(name string) bool {
	return dovecotFiles[name] || strings.HasPrefix(name, "dovecot.") || strings.HasPrefix(name, "dovecot-uidvalidity.") ||
		strings.HasPrefix(name, "courierimap")
}

// isMaildir reports whether dir has a cur/ or new/ directory.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// collectDir appends the message files under dir, in name order. In a
// Maildir only cur/ and new/ hold messages, as sa-learn reads it (tmp/ has
// deliveries in progress, the rest is the IMAP server's state); its
// Maildir++ subfolders (".Name") are Maildirs too. Elsewhere, dotfiles and
// Dovecot's files are skipped and subdirectories walked.
func collectDir(dir string, files *[]string, bad func(string, error)) {
	if isMaildir(dir) {
		for _, sub := range []string{"cur", "new"} {
			collectFiles(filepath.Join(dir, sub), files, bad)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			bad(dir, err)
			return
		}
		for _, d := range ents {
			if p := filepath.Join(dir, d.Name()); strings.HasPrefix(d.Name(), ".") && len(d.Name()) > 1 && isMaildir(p) {
				collectDir(p, files, bad)
			}
		}
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		bad(dir, err)
		return
	}
	for _, d := range ents {
		name := d.Name()
		p := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, ".") || isDovecotFile(name):
		case d.IsDir():
			collectDir(p, files, bad)
		case d.Type().IsRegular():
			*files = append(*files, p)
		}
	}
}

// collectFiles appends the regular, non-dot files of a Maildir's cur/ or new/.
func collectFiles(dir string, files *[]string, bad func(string, error)) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return // a Maildir may lack new/ or cur/
	}
	if err != nil {
		bad(dir, err)
		return
	}
	for _, d := range ents {
		if !strings.HasPrefix(d.Name(), ".") && d.Type().IsRegular() {
			*files = append(*files, filepath.Join(dir, d.Name()))
		}
	}
}

// maxMessage bounds one message read by learn.
const maxMessage = 64 << 20

func walkFile(path string, fn func(string, []byte) error, bad func(string, error)) error {
	f, err := os.Open(path)
	if err != nil {
		bad(path, err)
		return nil
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(5)
	if string(head) != "From " {
		raw, err := io.ReadAll(io.LimitReader(br, maxMessage))
		if err != nil {
			bad(path, err)
			return nil
		}
		return fn(path, raw)
	}
	// mbox: messages start at lines beginning "From "; ">From " quoting is
	// undone (mboxrd).
	var cur bytes.Buffer
	n := 0
	flush := func() error {
		// The blank line before the next "From " line (or at the end) is the
		// mbox separator, not the message's: without this the same message
		// read from a file and from an mbox would differ.
		b := cur.Bytes()
		if bytes.HasSuffix(b, []byte("\r\n\r\n")) {
			b = b[:len(b)-2]
		} else if bytes.HasSuffix(b, []byte("\n\n")) {
			b = b[:len(b)-1]
		}
		if len(b) == 0 {
			return nil
		}
		n++
		err := fn(fmt.Sprintf("%s#%d", path, n), bytes.Clone(b))
		cur.Reset()
		return err
	}
	lineStart := true // a long line comes in several pieces: only the first can be "From "
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			switch {
			case lineStart && bytes.HasPrefix(line, []byte("From ")):
				if ferr := flush(); ferr != nil {
					return ferr
				}
			case lineStart && bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")):
				if cur.Len() < maxMessage {
					cur.Write(line[1:])
				}
			default:
				if cur.Len() < maxMessage {
					cur.Write(line)
				}
			}
			lineStart = line[len(line)-1] == '\n'
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err != io.EOF {
				bad(path, err)
			}
			break
		}
	}
	return flush()
}
