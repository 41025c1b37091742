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
	"path/filepath"
	"sort"

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
		Args:  cobra.MinimumNArgs(1),
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
			e, err := spamEngine(ctx, app, true)
			if err != nil {
				return err
			}
			mode := "spam"
			if asHam {
				mode = "ham"
			} else if forget {
				mode = "forget"
			}
			return runLearn(ctx, e, args, mode, user, app.Stdout)
		},
	}
	c.Flags().BoolVar(&asSpam, "spam", false, "learn the messages as spam")
	c.Flags().BoolVar(&asHam, "ham", false, "learn the messages as ham")
	c.Flags().BoolVar(&forget, "forget", false, "remove the messages from Bayes")
	c.Flags().StringVar(&user, "user", "", "also train this user's table (with bayes.per_user)")
	return c
}

// runLearn trains on every message found under paths. mode is spam, ham or forget.
func runLearn(ctx context.Context, e *spam.Engine, paths []string, mode, user string, out io.Writer) error {
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
			// A store failure stops the run: everything after would fail too.
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	for _, p := range paths {
		if err := walkMessages(p, each, func(name string, err error) {
			failed++
			fmt.Fprintf(out, "skipped %s: %v\n", name, err)
		}); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "%s: %d message(s) processed, %d already done, %d unreadable\n", mode, learned, skipped, failed)
	return nil
}

// walkMessages calls fn for every message in path: a message file, an mbox
// file (first line "From "), a Maildir (cur/ and new/) or a directory tree of
// those. Unreadable entries go to bad; an error from fn stops the walk.
func walkMessages(path string, fn func(name string, raw []byte) error, bad func(string, error)) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return walkFile(path, fn, bad)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			bad(p, err)
			return nil
		}
		if d.IsDir() {
			// In a Maildir only cur/ and new/ hold messages.
			if base := d.Name(); base == "tmp" && p != path {
				if _, err := os.Stat(filepath.Join(filepath.Dir(p), "cur")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		if err := walkFile(f, fn, bad); err != nil {
			return err
		}
	}
	return nil
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
		if cur.Len() == 0 {
			return nil
		}
		n++
		err := fn(fmt.Sprintf("%s#%d", path, n), bytes.Clone(cur.Bytes()))
		cur.Reset()
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			switch {
			case bytes.HasPrefix(line, []byte("From ")):
				if ferr := flush(); ferr != nil {
					return ferr
				}
			case bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")):
				cur.Write(line[1:])
			default:
				if cur.Len() < maxMessage {
					cur.Write(line)
				}
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			break
		}
	}
	return flush()
}
