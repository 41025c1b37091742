package lmtpd

import (
	"strings"
	"testing"
)

// Reload applies to what comes after it (max_recipients, recipient_delimiter)
// and keeps what belongs to the LMTP server as started.
func TestReload(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Config.MaxRecipients = 3 })
	rc, _ := e.dial().send("s@example.net", []string{"alice@example.com", "carol@example.com"}, testMsg)
	if !strings.HasPrefix(rc[0], "250") || !strings.HasPrefix(rc[1], "250") {
		t.Fatalf("before reload: RCPT replies %q", rc)
	}

	before := e.srv.Deliverer()
	cfg := before.Config
	cfg.MaxRecipients = 1
	cfg.RecipientDelimiter = "-"
	cfg.Hostname = "other.test"  // restart only
	cfg.MaxMessageSize = 1 << 10 // restart only
	if err := e.srv.Reload(Options{Config: cfg, Directory: e.users, Sender: e.sender}); err != nil {
		t.Fatal(err)
	}
	rc, _ = e.dial().send("s@example.net", []string{"alice-x@example.com", "carol@example.com"}, testMsg)
	if !strings.HasPrefix(rc[0], "250") || !strings.HasPrefix(rc[1], "452 4.5.3") {
		t.Errorf("after reload: RCPT replies %q, want 250 (new delimiter) then 452 4.5.3 (max_recipients 1)", rc)
	}
	got := e.srv.Deliverer()
	if got.Config.Hostname != "mx.test" || got.Config.MaxMessageSize != DefaultConfig().MaxMessageSize {
		t.Errorf("restart-only settings reloaded: hostname %q, max_message_size %d", got.Config.Hostname, got.Config.MaxMessageSize)
	}
	if got.Metrics != before.Metrics || got.Quarantine != e.quar {
		t.Error("metrics or quarantine replaced by a reload")
	}
	if err := e.srv.Reload(Options{Config: cfg}); err == nil {
		t.Error("Reload without a directory accepted")
	}
}
