package authcheck

import (
	"fmt"
	"time"

	"github.com/dovetail-mail/dovetail/dnsbl"
	"github.com/dovetail-mail/dovetail/internal/config"
)

// Config is the `auth:` part of the spam section.
type Config struct {
	SPF   bool `yaml:"spf"`
	DKIM  bool `yaml:"dkim"`
	DMARC bool `yaml:"dmarc"` // needs SPF and DKIM results; runs only when both are on
	// Timeout bounds each DNS query; the scan budget bounds them all.
	Timeout config.Duration `yaml:"timeout"`
	// MaxSignatures caps the DKIM signatures verified per message.
	MaxSignatures int `yaml:"max_signatures"`
	// Scores overrides the default score of any symbol (see DefaultScores).
	Scores map[string]float64 `yaml:"scores"`
	// DNSBL configures client-address (RBL) and URI-domain (URIBL) lists.
	DNSBL dnsbl.Config `yaml:"dnsbl"`
}

// DefaultConfig enables SPF, DKIM and DMARC with 3s per query and no DNS lists.
func DefaultConfig() Config {
	return Config{SPF: true, DKIM: true, DMARC: true, Timeout: config.Duration(3 * time.Second), MaxSignatures: 5, DNSBL: dnsbl.DefaultConfig()}
}

// Validate checks the direct fields (the loader validates DNSBL itself).
func (c Config) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive", "e.g. 3s"))
	}
	if c.MaxSignatures <= 0 || c.MaxSignatures > 50 {
		errs = append(errs, config.Errorf("max_signatures", "must be between 1 and 50", "e.g. 5"))
	}
	for name := range c.Scores {
		if _, ok := DefaultScores[name]; !ok {
			errs = append(errs, config.Errorf("scores."+name, fmt.Sprintf("unknown symbol %q", name), "see spam/authcheck DefaultScores"))
		}
	}
	return config.Join(errs...)
}

// DefaultScores are deliberately small, as in SpamAssassin and rspamd: a
// missing or broken SPF/DKIM is common on legitimate mail, so only an explicit
// DMARC reject policy weighs much. Temporary errors score 0. A From that
// names no single parsable mailbox (DMARC_BAD_FROM) can never pass DMARC and
// whatever a mail client shows for it is unauthenticated, so it scores like a
// failure, between the quarantine and none policies.
var DefaultScores = map[string]float64{
	"SPF_PASS":          -0.1,
	"SPF_FAIL":          1.0,
	"SPF_SOFTFAIL":      0.5,
	"SPF_NEUTRAL":       0,
	"SPF_NONE":          0,
	"SPF_TEMPERROR":     0,
	"SPF_PERMERROR":     0.1,
	"DKIM_VALID":        -0.1,
	"DKIM_INVALID":      1.0,
	"DKIM_NONE":         0,
	"DKIM_TEMPERROR":    0,
	"DKIM_PERMERROR":    0.1,
	"DKIM_BODY_LENGTH":  0,
	"DKIM_TESTING":      0, // RFC 6376 §3.6.1: scored as unsigned mail
	"DMARC_PASS":        -0.2,
	"DMARC_REJECT":      3.5,
	"DMARC_QUARANTINE":  2.0,
	"DMARC_POLICY_NONE": 0.1,
	"DMARC_NONE":        0,
	"DMARC_TEMPERROR":   0,
	"DMARC_PERMERROR":   0,
	"DMARC_BAD_FROM":    1.5,
	"RBL_TEMPERROR":     0,
	"URIBL_TEMPERROR":   0,
}
