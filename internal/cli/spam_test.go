package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/store/mem"
)

const cliGTUBE = "From: a@example.com\nSubject: t\n\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n"

func TestRunScoreJSON(t *testing.T) {
	e, err := spam.New(spam.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "gtube.eml")
	os.WriteFile(f, []byte(cliGTUBE), 0o644)
	var out bytes.Buffer
	if err := runScore(context.Background(), e, []string{f, "-"}, strings.NewReader("Subject: hi\n\nhello\n"), &out, &out, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out.String())
	}
	var r scoreResult
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	if r.File != f || r.Action != spam.Reject || r.Score < 1000 || len(r.Symbols) == 0 || r.Symbols[0].Description != "" {
		t.Errorf("gtube line: %+v", r)
	}
	if !strings.Contains(lines[1], `"file":"-"`) || !strings.Contains(lines[1], `"action":"no action"`) {
		t.Errorf("stdin line: %s", lines[1])
	}
}

func TestRunLearnMaildirAndMbox(t *testing.T) {
	cfg := spam.DefaultConfig()
	e, err := spam.New(cfg, spam.WithStore(mem.New()))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, "Maildir", sub), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "Maildir", "cur", "1:2,S"), []byte("Subject: a\n\none\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Maildir", "new", "2"), []byte("Subject: b\n\ntwo\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Maildir", "tmp", "3"), []byte("Subject: partial\n\nthree\n"), 0o644)
	mbox := "From a@b Mon Jan  1 00:00:00 2024\nSubject: c\n\n>From the start\n\nFrom x@y Mon Jan  1 00:00:00 2024\nSubject: d\n\nfour\n"
	os.WriteFile(filepath.Join(dir, "box.mbox"), []byte(mbox), 0o644)
	var out bytes.Buffer
	ctx := context.Background()
	if err := runLearn(ctx, e, []string{filepath.Join(dir, "Maildir"), filepath.Join(dir, "box.mbox")}, "spam", "", &out, &out); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := e.BayesCounts(ctx); s != 4 {
		t.Errorf("learned %d spam, want 4 (Maildir cur+new, 2 mbox): %s", s, out.String())
	}
	out.Reset()
	if err := runLearn(ctx, e, []string{filepath.Join(dir, "box.mbox")}, "forget", "", &out, &out); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := e.BayesCounts(ctx); s != 2 {
		t.Errorf("after forget: %d spam: %s", s, out.String())
	}
}

// fdCounter is a stdin that, when read, counts this process's open files
// under dir.
type fdCounter struct {
	dir  string
	open int
	r    io.Reader
}

func (c *fdCounter) Read(p []byte) (int, error) {
	if c.r == nil {
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, c.dir) {
				c.open++
			}
		}
		c.r = strings.NewReader("Subject: hi\n\nhello\n")
	}
	return c.r.Read(p)
}

// TestRunScoreClosesEachFile: `dovetail score /spool/*.eml` over thousands of
// files must not keep every one open to the end (too many open files), and a
// file that cannot be read is reported on the command's stderr.
func TestRunScoreClosesEachFile(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		testenv.SkipOrFail(t, "no /proc/self/fd: %v", err)
	}
	e, err := spam.New(spam.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var files []string
	for i := range 3 {
		f := filepath.Join(dir, fmt.Sprintf("%d.eml", i))
		os.WriteFile(f, []byte(cliGTUBE), 0o644)
		files = append(files, f)
	}
	missing := filepath.Join(dir, "missing.eml")
	stdin := &fdCounter{dir: dir}
	var out, errOut bytes.Buffer
	err = runScore(context.Background(), e, append(files, missing, "-"), stdin, &out, &errOut, false)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 {
		t.Errorf("err = %v, want exit status 1", err)
	}
	if stdin.open != 0 {
		t.Errorf("%d scored files still open while scoring the next", stdin.open)
	}
	if !strings.Contains(errOut.String(), missing) {
		t.Errorf("stderr %q does not name %s", errOut.String(), missing)
	}
}
