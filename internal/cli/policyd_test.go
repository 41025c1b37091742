package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPolicydCommand runs `dovetail policyd` on a config without stateful checks
// (no store needed), asks one policy question over the socket and stops it.
func TestPolicydCommand(t *testing.T) {
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
policyd:
  listen:
    address: %s
  checks: [access]
  access:
    enabled: true
    deny_networks: [192.0.2.0/24]
  greylist:
    enabled: false
  ratelimit:
    enabled: false
`, t.TempDir(), addr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	app := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}
	defer app.Close()
	root := newRootCmd(app)
	root.SetArgs([]string{"-c", cfgPath, "policyd"})
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var nc net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if nc, err = net.Dial("tcp", addr); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("policyd exited: %v\n%s", err, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("policyd did not listen on %s: %v\n%s", addr, err, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer nc.Close()
	fmt.Fprint(nc, "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\n\n")
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || line != "action=REJECT 5.7.1 Access denied\n" {
		t.Fatalf("reply %q, %v", line, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("policyd: %v\n%s", err, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("policyd did not stop")
	}
}
