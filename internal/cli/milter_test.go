package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	gomilter "github.com/emersion/go-milter"
)

// TestMilterCommand runs `dovetail milter` (engine without Bayes, auth checks
// on but no DNS reachable for a loopback client) and has a GTUBE message
// rejected over the milter protocol.
func TestMilterCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(t.TempDir(), "dovetail.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
metrics:
  listen: ""
spam:
  bayes:
    enabled: false
authcheck:
  spf: false
  dkim: false
  dmarc: false
milter:
  listen:
    address: %s
`, t.TempDir(), addr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	app := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}
	defer app.Close()
	root := newRootCmd(app)
	root.SetArgs([]string{"-c", cfgPath, "milter"})
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	client := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader,
	})
	var s *gomilter.ClientSession
	for deadline := time.Now().Add(10 * time.Second); ; {
		if s, err = client.Session(); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("milter exited: %v\n%s", err, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("milter did not listen on %s: %v\n%s", addr, err, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer s.Close()
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Conn("c.test", gomilter.FamilyInet, 1, "127.0.0.1") },
		func() (*gomilter.Action, error) { return s.Helo("c.test") },
		func() (*gomilter.Action, error) { return s.Mail("a@b.test", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("alice@example.com", nil) },
		func() (*gomilter.Action, error) {
			var h textproto.Header
			h.Add("Subject", "test")
			return s.Header(h)
		},
	}
	for i, step := range steps {
		if act, err := step(); err != nil || act.Code != gomilter.ActContinue {
			t.Fatalf("step %d: %v %v", i, act, err)
		}
	}
	_, act, err := s.BodyReadFrom(strings.NewReader("XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"))
	if err != nil || act.Code != gomilter.ActReplyCode || act.SMTPCode != 550 || !strings.HasPrefix(act.SMTPText, "5.7.1 ") {
		t.Fatalf("GTUBE: %+v %v", act, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("milter: %v\n%s", err, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("milter did not stop")
	}
	if !strings.Contains(errOut.String(), "action=reject") {
		t.Errorf("no log line for the message:\n%s", errOut.String())
	}
}
