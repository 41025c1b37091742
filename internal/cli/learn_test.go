package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/store/mem"
)

func learnEngine(t *testing.T) *spam.Engine {
	t.Helper()
	e, err := spam.New(spam.DefaultConfig(), spam.WithStore(mem.New()))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunLearnMaildirSkipsDovecotFiles: in a Maildir only cur/ and new/ hold
// messages (of the folder and its Maildir++ subfolders); Dovecot's index
// and state files are not mail, nor are dotfiles in a plain directory.
func TestRunLearnMaildirSkipsDovecotFiles(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	write(t, filepath.Join(md, "cur", "1:2,S"), "Subject: a\n\none\n")
	write(t, filepath.Join(md, "new", "2"), "Subject: b\n\ntwo\n")
	write(t, filepath.Join(md, "tmp", "3"), "Subject: partial\n\nthree\n")
	write(t, filepath.Join(md, ".Sent", "cur", "4:2,S"), "Subject: c\n\nfour\n")
	write(t, filepath.Join(md, ".Sent", "maildirfolder"), "")
	write(t, filepath.Join(md, ".Sent", "dovecot-uidlist"), "3 V1 N2\n1 u1\n")
	for _, f := range []string{"dovecot-uidlist", "dovecot-keywords", "dovecot.index.log", "dovecot.index.cache",
		"dovecot.list.index.log", "dovecot-uidvalidity", "dovecot-uidvalidity.65a1b2c3", "subscriptions", "maildirsize"} {
		write(t, filepath.Join(md, f), "3 V1700000000 N5 G0123456789abcdef\n1 :1700000000.M1P1.host\n0 keyword\n")
	}
	plain := filepath.Join(dir, "plain")
	write(t, filepath.Join(plain, "msg1.eml"), "Subject: d\n\nfive\n")
	write(t, filepath.Join(plain, ".hidden"), "Subject: e\n\nsix\n")
	write(t, filepath.Join(plain, "dovecot-uidlist"), "3 V1 N2\n")
	write(t, filepath.Join(plain, "sub", "msg2.eml"), "Subject: f\n\nseven\n")

	e := learnEngine(t)
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if err := runLearn(ctx, e, []string{md, plain}, "spam", "", &out, &errOut); err != nil {
		t.Fatalf("%v: %s%s", err, out.String(), errOut.String())
	}
	if s, _, _ := e.BayesCounts(ctx); s != 5 {
		t.Errorf("learned %d, want 5 (cur, new, .Sent/cur, two plain files): %s", s, out.String())
	}
}

// TestRunLearnMissingPathGoesOn: a bad path is reported with its name on
// stderr, the others are learned, the summary printed, and the run fails.
func TestRunLearnMissingPathGoesOn(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.eml")
	write(t, good, "Subject: a\n\none\n")
	missing := filepath.Join(dir, "missing")
	e := learnEngine(t)
	ctx := context.Background()
	var out, errOut bytes.Buffer
	err := runLearn(ctx, e, []string{missing, good}, "ham", "", &out, &errOut)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 {
		t.Errorf("err = %v, want exit status 1", err)
	}
	if _, h, _ := e.BayesCounts(ctx); h != 1 {
		t.Errorf("learned %d ham, want 1", h)
	}
	if !strings.Contains(errOut.String(), missing) {
		t.Errorf("stderr %q does not name %s", errOut.String(), missing)
	}
	if !strings.Contains(out.String(), "ham: 1 message(s) processed") || !strings.Contains(out.String(), "1 unreadable") {
		t.Errorf("summary %q", out.String())
	}
}

// TestMboxMessageSameAsFile: the blank line before the next "From " line is
// the mbox's, so a message learned from an mbox is already known when
// learned again from its own file.
func TestMboxMessageSameAsFile(t *testing.T) {
	const msg = "From: a@example.com\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nSubject: c\n\nbody text\n"
	dir := t.TempDir()
	box := filepath.Join(dir, "box.mbox")
	write(t, box, "From a@b Mon Jan  1 00:00:00 2024\n"+msg+"\nFrom x@y Mon Jan  1 00:00:00 2024\nSubject: d\n\nfour\n\n")
	var got []string
	if err := walkFile(box, func(_ string, raw []byte) error {
		got = append(got, string(raw))
		return nil
	}, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != msg || got[1] != "Subject: d\n\nfour\n" {
		t.Errorf("mbox messages %q", got)
	}
	e := learnEngine(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := runLearn(ctx, e, []string{box}, "spam", "", &out, &out); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.eml")
	write(t, file, strings.ReplaceAll(msg, "\n", "\r\n"))
	out.Reset()
	if err := runLearn(ctx, e, []string{file}, "spam", "", &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 message(s) processed, 1 already done") {
		t.Errorf("the file copy was learned again: %s", out.String())
	}
}

// TestMboxLongLineIsNotASeparator: a line longer than the read buffer whose
// continuation starts with "From " does not split the message.
func TestMboxLongLineIsNotASeparator(t *testing.T) {
	dir := t.TempDir()
	box := filepath.Join(dir, "box.mbox")
	long := strings.Repeat("x", 64<<10) + "From here on\n" // the buffer fills right before "From "
	write(t, box, "From a@b Mon Jan  1 00:00:00 2024\nSubject: c\n\n"+long)
	var got []string
	walkFile(box, func(_ string, raw []byte) error { got = append(got, string(raw)); return nil }, func(string, error) {})
	if len(got) != 1 || !strings.HasSuffix(got[0], long) {
		t.Errorf("%d messages, want 1 ending in the long line", len(got))
	}
}
