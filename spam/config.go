package spam

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// Thresholds are the score thresholds of the actions. A nil threshold is
// inherited (in Config.Domains) or disabled (at the top level); 0 or less
// disables an action explicitly. The most severe action whose threshold the
// score reaches wins, as in rspamd.
type Thresholds struct {
	Reject         *float64 `yaml:"reject"`
	Greylist       *float64 `yaml:"greylist"`
	RewriteSubject *float64 `yaml:"rewrite_subject"`
	AddHeader      *float64 `yaml:"add_header"`
}

func f64(v float64) *float64 { return &v }

// merge returns t with the nil fields taken from base.
func (t Thresholds) merge(base Thresholds) Thresholds {
	if t.Reject == nil {
		t.Reject = base.Reject
	}
	if t.Greylist == nil {
		t.Greylist = base.Greylist
	}
	if t.RewriteSubject == nil {
		t.RewriteSubject = base.RewriteSubject
	}
	if t.AddHeader == nil {
		t.AddHeader = base.AddHeader
	}
	return t
}

// Lists are allow or deny lists. Senders are full addresses (envelope sender or
// header From), Domains match the sender domain and its subdomains, Networks are
// CIDR prefixes or addresses of the client.
type Lists struct {
	Senders  []string `yaml:"senders"`
	Domains  []string `yaml:"domains"`
	Networks []string `yaml:"networks"`
}

// Validate checks the network syntax.
func (l Lists) Validate() error {
	var errs []error
	for i, n := range l.Networks {
		if _, err := parseNet(n); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("networks[%d]", i), err.Error(), "use an address or CIDR such as 192.0.2.0/24"))
		}
	}
	for i, s := range l.Senders {
		if !strings.Contains(s, "@") {
			errs = append(errs, config.Errorf(fmt.Sprintf("senders[%d]", i), fmt.Sprintf("%q is not an address", s), "list domains under domains:"))
		}
	}
	return config.Join(errs...)
}

func parseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// BayesConfig configures the classifier.
type BayesConfig struct {
	Enabled bool `yaml:"enabled"`
	// MinSpam and MinHam are the messages each class needs before Bayes is used
	// (SpamAssassin: 200 each).
	MinSpam int64 `yaml:"min_spam"`
	MinHam  int64 `yaml:"min_ham"`
	// PerUser keeps a token table per Input.User besides the global one; the
	// user's table is used once it has enough training.
	PerUser bool `yaml:"per_user"`
	// Autolearn learns a message as spam when its score without Bayes is at
	// least AutolearnSpam, as ham at most AutolearnHam (SpamAssassin's defaults
	// 12.0 and 0.1).
	Autolearn     bool    `yaml:"autolearn"`
	AutolearnSpam float64 `yaml:"autolearn_spam"`
	AutolearnHam  float64 `yaml:"autolearn_ham"`
	// OnUnavailable is what a scan does when the token store cannot be read
	// (Redis down): tempfail (default) fails the scan, so the milter answers
	// its on_error (451 by default) and the sender retries; skip scores
	// without Bayes (SpamAssassin's and rspamd's way) — more spam gets through
	// while the store is down, with BAYES_UNAVAILABLE in the symbols.
	OnUnavailable string `yaml:"on_unavailable"`
}

// Bayes OnUnavailable values.
const (
	BayesTempfail = "tempfail"
	BayesSkip     = "skip"
)

// Validate checks the training minimums and autolearn thresholds.
func (b BayesConfig) Validate() error {
	var errs []error
	if b.MinSpam < 0 || b.MinHam < 0 {
		errs = append(errs, config.Errorf("min_spam", "must not be negative", ""))
	}
	if b.Autolearn && b.AutolearnHam >= b.AutolearnSpam {
		errs = append(errs, config.Errorf("autolearn_ham", "must be below autolearn_spam", ""))
	}
	switch b.OnUnavailable {
	case BayesTempfail, BayesSkip:
	default:
		errs = append(errs, config.Errorf("on_unavailable", fmt.Sprintf("%q is neither tempfail nor skip", b.OnUnavailable), "tempfail"))
	}
	return config.Join(errs...)
}

// Config is the spam engine's section of the configuration file.
type Config struct {
	// Actions are the default action thresholds; Domains overrides them per
	// recipient domain.
	Actions Thresholds            `yaml:"actions"`
	Domains map[string]Thresholds `yaml:"domains"`
	// SubjectPrefix is the rewrite-subject template: %s is the original
	// subject, %d the score.
	SubjectTemplate string `yaml:"subject_template"`

	// DefaultRules loads the embedded ruleset; RuleFiles adds SpamAssassin-syntax
	// .cf files or directories of them, in order (later scores win).
	DefaultRules bool               `yaml:"default_rules"`
	RuleFiles    []string           `yaml:"rule_files"`
	Scores       map[string]float64 `yaml:"scores"` // per-symbol score overrides

	Bayes BayesConfig `yaml:"bayes"`
	Allow Lists       `yaml:"allow"`
	Deny  Lists       `yaml:"deny"`

	// Timeout is the scan budget shared by rules and checks.
	Timeout config.Duration `yaml:"timeout"`
	// Message limits: the hard size cap, the in-memory spill threshold, the
	// scanned prefix and the MIME part cap.
	MaxSize        config.Size `yaml:"max_size"`
	SpillThreshold config.Size `yaml:"spill_threshold"`
	ScanSize       config.Size `yaml:"scan_size"`
	MaxParts       int         `yaml:"max_parts"`
	TempDir        string      `yaml:"temp_dir"`
}

// DefaultConfig returns the documented defaults (docs/spam.md): add header at 6
// and reject at 15 as in rspamd, greylist and rewrite-subject off; Bayes on with
// 200/200 minimum training, autolearn off.
func DefaultConfig() Config {
	return Config{
		Actions:         Thresholds{Reject: f64(15), AddHeader: f64(6), Greylist: nil, RewriteSubject: nil},
		SubjectTemplate: "***SPAM*** %s",
		DefaultRules:    true,
		Bayes: BayesConfig{Enabled: true, MinSpam: 200, MinHam: 200, PerUser: false,
			Autolearn: false, AutolearnSpam: 12, AutolearnHam: 0.1, OnUnavailable: BayesTempfail},
		Timeout:        config.Duration(10e9),
		MaxSize:        50 << 20,
		SpillThreshold: 1 << 20,
		ScanSize:       1 << 20,
		MaxParts:       500,
	}
}

// Validate checks the engine's own fields.
func (c Config) Validate() error {
	var errs []error
	check := func(prefix string, t Thresholds) {
		if t.AddHeader != nil && t.Reject != nil && *t.AddHeader > 0 && *t.Reject > 0 && *t.Reject < *t.AddHeader {
			errs = append(errs, config.Errorf(prefix+"reject", "is below add_header", "reject must be the highest threshold"))
		}
	}
	check("actions.", c.Actions)
	seen := map[string]string{}
	for d, t := range c.Domains {
		check("domains."+d+".", t.merge(c.Actions))
		// Keys are matched case-insensitively; two spellings of one domain
		// would apply one of them at random.
		low := strings.ToLower(d)
		if other, ok := seen[low]; ok {
			errs = append(errs, config.Errorf("domains."+d, fmt.Sprintf("is the same domain as %s", other), "keep one entry"))
		}
		seen[low] = d
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive", "e.g. 10s"))
	}
	if c.MaxSize < 0 || c.SpillThreshold < 0 || c.ScanSize < 0 || c.MaxParts < 0 {
		errs = append(errs, config.Errorf("max_size", "limits must not be negative", ""))
	}
	if c.SubjectTemplate != "" && !strings.Contains(c.SubjectTemplate, "%s") {
		errs = append(errs, config.Errorf("subject_template", "has no %s", `e.g. "***SPAM*** %s"`))
	}
	return config.Join(errs...)
}

// limits returns the message limits of the config.
func (c Config) limits() message.Limits {
	return message.Limits{SpillThreshold: int64(c.SpillThreshold), MaxSize: int64(c.MaxSize),
		ScanSize: int64(c.ScanSize), MaxParts: c.MaxParts, TempDir: c.TempDir}
}
