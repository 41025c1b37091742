package lmtpd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
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

// The SMTP submission greets with lmtpd's hostname: "EHLO localhost" is what
// greylisting and reject_non_fqdn_helo_hostname refuse first, and a refused
// vacation reply is dropped.
func TestSMTPSenderHelo(t *testing.T) {
	helo := make(chan string, 1)
	addr := serveSMTP(t, func(c *smtp.Conn) (smtp.Session, error) {
		helo <- c.Hostname()
		return capture(make(chan []byte, 1)), nil
	})
	s, err := NewSender(SubmitConfig{Method: "smtp", Address: addr}, "mx.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), "a@b", []string{"c@d"}, []byte("Subject: x\n\nhi\n")); err != nil {
		t.Fatal(err)
	}
	if got := <-helo; got != "mx.example.com" {
		t.Errorf("EHLO %q, want mx.example.com", got)
	}
}

// serveSMTP runs a go-smtp server with the sessions newSession makes on a
// local port until the test ends, and returns its address.
func serveSMTP(t *testing.T, newSession func(*smtp.Conn) (smtp.Session, error)) string {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(newSession))
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
