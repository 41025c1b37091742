package milter

import (
	"fmt"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// What to do with mail from SASL-authenticated clients (Config.Authenticated).
const (
	AuthSkip     = "skip"     // pass unscanned, no headers
	AuthScore    = "score"    // scan like any inbound message
	AuthOutbound = "outbound" // scan with the outbound scorer; only reject is enforced
)

// What to do when scanning fails (Config.OnError).
const (
	OnErrorTempfail = "tempfail" // 451 4.7.1: the client retries later
	OnErrorAccept   = "accept"   // pass with an X-Spam-Skipped header
)

// Config is the `milter:` section.
type Config struct {
	Listen config.Listener `yaml:"listen"`
	// MaxSize: larger messages pass unscanned with an X-Spam-Skipped header.
	MaxSize config.Size `yaml:"max_size"`
	// ScanTimeout bounds one scan (all checks, DNS included) from end of message.
	// Keep it well below Postfix's milter_content_timeout (300s).
	ScanTimeout config.Duration `yaml:"scan_timeout"`
	// OnError: tempfail (default) or accept.
	OnError string `yaml:"on_error"`
	// Authenticated: skip (default), score or outbound.
	Authenticated string `yaml:"authenticated"`
	// HoldQuarantine puts messages whose action is reject on Postfix's hold
	// queue (accepted, reviewed with postqueue/postsuper) instead of rejecting.
	HoldQuarantine bool `yaml:"hold_quarantine"`
	// RejectText and TempfailText follow the 550 5.7.1 / 451 4.7.1 codes.
	RejectText   string `yaml:"reject_text"`
	TempfailText string `yaml:"tempfail_text"`
	// RequestMacros asks the MTA for the macros the milter needs
	// (SMFIF_SETSYMLIST): {client_addr} and {auth_authen} are not all in
	// Postfix's default lists.
	RequestMacros bool `yaml:"request_macros"`
	// SkipHeaderReplies negotiates SMFIP_NOHREPL: the MTA sends header fields
	// without waiting for a reply to each (one round trip per field saved;
	// twice the throughput on typical mail). Postfix ≥ 2.6 and Sendmail 8.14
	// offer it; turn it off for an MTA that does not (it would refuse the
	// negotiation).
	SkipHeaderReplies bool `yaml:"skip_header_replies"`
	// AuthservID names this host in Authentication-Results; "" uses the MTA's
	// j macro ($myhostname).
	AuthservID string `yaml:"authserv_id"`
}

// DefaultConfig listens on loopback port 11332 (rspamd's milter port, so
// existing smtpd_milters lines keep working).
func DefaultConfig() Config {
	return Config{
		Listen:            config.Listener{Address: "127.0.0.1:11332"},
		MaxSize:           config.Size(10 << 20),
		ScanTimeout:       config.Duration(20 * time.Second),
		OnError:           OnErrorTempfail,
		Authenticated:     AuthSkip,
		RejectText:        "Message rejected as spam",
		TempfailText:      "Try again later",
		RequestMacros:     true,
		SkipHeaderReplies: true,
	}
}

// Validate checks the direct fields.
func (c Config) Validate() error {
	var errs []error
	if c.Listen.Address == "" {
		errs = append(errs, config.Errorf("listen.address", "is empty", "e.g. 127.0.0.1:11332 or unix:/var/spool/postfix/private/dovetail-milter"))
	}
	if c.MaxSize <= 0 {
		errs = append(errs, config.Errorf("max_size", "must be positive", "e.g. 10MB"))
	}
	if c.ScanTimeout <= 0 {
		errs = append(errs, config.Errorf("scan_timeout", "must be positive", "e.g. 20s"))
	} else if c.ScanTimeout.D() >= 300*time.Second {
		errs = append(errs, config.Errorf("scan_timeout", "must be below Postfix's milter_content_timeout (300s)", "e.g. 20s"))
	}
	switch c.OnError {
	case OnErrorTempfail, OnErrorAccept:
	default:
		errs = append(errs, config.Errorf("on_error", fmt.Sprintf("%q is neither tempfail nor accept", c.OnError), ""))
	}
	switch c.Authenticated {
	case AuthSkip, AuthScore, AuthOutbound:
	default:
		errs = append(errs, config.Errorf("authenticated", fmt.Sprintf("%q is not skip, score or outbound", c.Authenticated), ""))
	}
	for f, s := range map[string]string{"reject_text": c.RejectText, "tempfail_text": c.TempfailText} {
		if strings.ContainsAny(s, "\r\n\x00") || len(s) > 200 {
			errs = append(errs, config.Errorf(f, "must be one line of at most 200 characters", ""))
		}
	}
	return config.Join(errs...)
}
