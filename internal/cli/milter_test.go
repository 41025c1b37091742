package cli

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	gomilter "github.com/emersion/go-milter"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// TestMilterCommand runs `dovetail milter` (engine without Bayes, auth checks
// on but no DNS reachable for a loopback client) and has a GTUBE message
// rejected over the milter protocol.
func TestMilterCommand(t *testing.T) {
	addr := testenv.FreeAddr(t)
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
`, usersDataDir(t), addr)
	client := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader,
	})
	var s *gomilter.ClientSession
	d := startDaemonCmd(t, "milter", cfg, func() (err error) {
		s, err = client.Session()
		return err
	})
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
	d.stop(t)
	if !strings.Contains(d.logs.String(), "action=reject") {
		t.Errorf("no log line for the message:\n%s", d.logs.String())
	}
}
