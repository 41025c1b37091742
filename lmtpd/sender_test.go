package lmtpd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSendmailSender(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := filepath.Join(dir, "sendmail")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > "+out+"\ncat >> "+out+"\n"), 0o755)
	s := &SendmailSender{Path: script}
	if err := s.Send(context.Background(), "", []string{"bob@example.net"}, []byte("Subject: x\n\nhi\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(b), "-i -f <> -- bob@example.net\nSubject: x") {
		t.Errorf("sendmail got %q", b)
	}
	if err := s.Send(context.Background(), "a@b", []string{"-oQ/tmp"}, nil); err == nil {
		t.Error("option-looking recipient accepted")
	}
}
