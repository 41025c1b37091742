package cli

import (
	"bufio"
	"fmt"
	"net"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// TestPolicydCommand runs `dovetail policyd` on a config without stateful checks
// (no store needed), asks one policy question over the socket and stops it.
func TestPolicydCommand(t *testing.T) {
	addr := testenv.FreeAddr(t)
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
`, usersDataDir(t), addr)
	var nc net.Conn
	d := startDaemonCmd(t, "policyd", cfg, func() (err error) {
		nc, err = net.Dial("tcp", addr)
		return err
	})
	defer nc.Close()
	fmt.Fprint(nc, "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\n\n")
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || line != "action=REJECT 5.7.1 Access denied\n" {
		t.Fatalf("reply %q, %v", line, err)
	}
	d.stop(t)
}
