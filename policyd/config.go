package policyd

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/dnsbl"
	"github.com/dovetail-mail/dovetail/internal/config"
)

// Check names, as written in Config.Checks.
const (
	CheckAccess      = "access"
	CheckRecipients  = "recipients"
	CheckSenderLogin = "sender_login"
	CheckDNSBL       = "dnsbl"
	CheckSPF         = "spf"
	CheckGreylist    = "greylist"
	CheckRateLimit   = "ratelimit"
)

// allChecks is the default evaluation order: cheap, local, decisive checks first;
// DNS next; the stateful ones last so that a request another check rejects
// neither creates a greylist entry nor counts against a rate limit.
var allChecks = []string{CheckAccess, CheckRecipients, CheckSenderLogin, CheckDNSBL, CheckSPF, CheckGreylist, CheckRateLimit}

// Store failure modes.
const (
	FailOpen   = "open"   // answer DUNNO as if the check had no opinion
	FailClosed = "closed" // answer DEFER_IF_PERMIT
)

// Config is the policyd section of the config file.
type Config struct {
	Listen config.Listener `yaml:"listen"`
	// Checks lists the enabled checks in evaluation order; a check listed here
	// must also be enabled in its own section.
	Checks []string `yaml:"checks"`
	// StoreFailure says what a check answers when the store is unreachable:
	// "open" (DUNNO, mail flows unchecked) or "closed" (DEFER_IF_PERMIT).
	StoreFailure string `yaml:"store_failure"`
	// MaxLineLength and MaxAttributes bound one request (see DefaultMaxLineLength).
	MaxLineLength config.Size `yaml:"max_line_length"`
	MaxAttributes int         `yaml:"max_attributes"`
	// IdleTimeout closes a connection with no request for that long. Postfix
	// closes idle policy connections after smtpd_policy_service_max_idle (300s).
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// ReadTimeout bounds reading one request once its first byte arrived, and
	// WriteTimeout writing one reply.
	ReadTimeout  config.Duration `yaml:"read_timeout"`
	WriteTimeout config.Duration `yaml:"write_timeout"`
	// RequestTimeout bounds all checks of one request (DNS, directory, store).
	// Keep it below Postfix's smtpd_policy_service_timeout (100s).
	RequestTimeout config.Duration `yaml:"request_timeout"`
	// MaxConnections bounds concurrent connections (Postfix opens one per smtpd
	// process, default_process_limit = 100).
	MaxConnections int `yaml:"max_connections"`
	// Hostname appears in the X-Greylist header.
	Hostname string `yaml:"hostname"`

	Access      AccessConfig      `yaml:"access"`
	Recipients  RecipientsConfig  `yaml:"recipients"`
	SenderLogin SenderLoginConfig `yaml:"sender_login"`
	DNSBL       DNSBLConfig       `yaml:"dnsbl"`
	SPF         SPFConfig         `yaml:"spf"`
	Greylist    GreylistConfig    `yaml:"greylist"`
	RateLimit   RateLimitConfig   `yaml:"ratelimit"`
}

// AccessConfig allows or denies clients by network and by country.
type AccessConfig struct {
	Enabled bool `yaml:"enabled"`
	// AllowNetworks end the evaluation with AllowAction (default DUNNO: no
	// further policy checks, Postfix goes on with its own restrictions).
	AllowNetworks []string `yaml:"allow_networks"`
	DenyNetworks  []string `yaml:"deny_networks"`
	// GeoIPDatabase is a MaxMind-format (MMDB) country or city database,
	// re-read on every reload (SIGHUP).
	GeoIPDatabase string `yaml:"geoip_database"`
	// DenyCountries are ISO 3166-1 alpha-2 codes. When AllowCountries is not
	// empty, every other country is denied too. Unknown locations are allowed.
	DenyCountries  []string `yaml:"deny_countries"`
	AllowCountries []string `yaml:"allow_countries"`
	AllowAction    string   `yaml:"allow_action"`
	DenyAction     string   `yaml:"deny_action"`
}

// RecipientsConfig rejects unknown or disabled local recipients at RCPT.
type RecipientsConfig struct {
	Enabled bool `yaml:"enabled"`
	// LocalDomains are the domains whose recipients the directory must know.
	LocalDomains       []string `yaml:"local_domains"`
	RecipientDelimiter string   `yaml:"recipient_delimiter"`
	UnknownAction      string   `yaml:"unknown_action"`
	DisabledAction     string   `yaml:"disabled_action"`
}

// SenderLoginConfig makes an authenticated user send only as an address the
// directory gives them (Postfix's reject_authenticated_sender_login_mismatch).
type SenderLoginConfig struct {
	Enabled            bool   `yaml:"enabled"`
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	MismatchAction     string `yaml:"mismatch_action"`
}

// DNSBLConfig scores the client address against DNS lists, postscreen style.
type DNSBLConfig struct {
	Enabled bool         `yaml:"enabled"`
	Lists   dnsbl.Config `yaml:"lists"`
	// Threshold: block when the summed scores of the matching lists reach it.
	// Lists with a negative score act as allowlists.
	Threshold float64 `yaml:"threshold"`
	// Action may use {client} and {lists}.
	Action string `yaml:"action"`
}

// SPFConfig checks the sender's SPF record at RCPT.
type SPFConfig struct {
	Enabled bool `yaml:"enabled"`
	// ExemptNetworks are trusted forwarders and backup MX hosts (and loopback):
	// their mail is relayed, so the sender's SPF record cannot list them.
	ExemptNetworks  []string `yaml:"exempt_networks"`
	FailAction      string   `yaml:"fail_action"`
	SoftFailAction  string   `yaml:"softfail_action"`
	TempErrorAction string   `yaml:"temperror_action"`
	PermErrorAction string   `yaml:"permerror_action"`
}

// GreylistConfig is greylisting with postgrey's semantics.
type GreylistConfig struct {
	Enabled bool `yaml:"enabled"`
	// Delay is how long a new triplet is deferred.
	Delay config.Duration `yaml:"delay"`
	// RetryWindow: a triplet not retried after Delay within this time starts over.
	RetryWindow config.Duration `yaml:"retry_window"`
	// MaxAge: a triplet that passed is forgotten after this long without mail.
	MaxAge config.Duration `yaml:"max_age"`
	// IPv4Prefix/IPv6Prefix group client addresses into networks (postgrey's
	// --ipv4cidr/--ipv6cidr); 32/128 greylist by host.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// AutoWhitelistAfter whitelists a client network after that many successful
	// retries, each counted at most once per AutoWhitelistInterval; 0 disables.
	AutoWhitelistAfter    int             `yaml:"auto_whitelist_after"`
	AutoWhitelistInterval config.Duration `yaml:"auto_whitelist_interval"`
	// Exemptions. Authenticated clients are always exempt.
	ExemptNetworks []string `yaml:"exempt_networks"`
	// ExemptClients are client host names or domains (a domain matches its
	// subdomains), as in postgrey's whitelist_clients.
	ExemptClients []string `yaml:"exempt_clients"`
	// ExemptRecipients are "user@domain", "user@" or "domain" entries.
	ExemptRecipients []string `yaml:"exempt_recipients"`
	// Files in postgrey's whitelist format (one entry per line, # comments,
	// /regex/ entries); read at start and on every reload.
	ExemptClientsFile    string `yaml:"exempt_clients_file"`
	ExemptRecipientsFile string `yaml:"exempt_recipients_file"`
	// ExemptSPFPass skips greylisting when the sender's SPF record passes.
	ExemptSPFPass bool `yaml:"exempt_spf_pass"`
	// RecipientDelimiter: sender "user+tag@" is keyed as "user@" (as postgrey).
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	Action             string `yaml:"action"`
	// AddHeader prepends "X-Greylist: delayed N seconds ..." on the first pass.
	AddHeader bool `yaml:"add_header"`
}

// RateLimitConfig counts messages and recipients in sliding windows.
type RateLimitConfig struct {
	Enabled bool        `yaml:"enabled"`
	Limits  []RateLimit `yaml:"limits"`
}

// RateLimit is one limit. Messages are counted once per transaction (at its
// first RCPT, via the instance attribute), recipients once per RCPT.
type RateLimit struct {
	Name string `yaml:"name"`
	// Key is what is counted: sasl_username, sender or client_address. A
	// request without that attribute is not limited by this entry.
	Key        string          `yaml:"key"`
	Messages   int64           `yaml:"messages"`
	Recipients int64           `yaml:"recipients"`
	Window     config.Duration `yaml:"window"`
	// Action when exceeded: DEFER, REJECT, HOLD (accept into the hold queue for
	// review) or a 4xx/5xx reply.
	Action string `yaml:"action"`
}

// Rate limit keys.
const (
	KeySASLUsername  = "sasl_username"
	KeySender        = "sender"
	KeyClientAddress = "client_address"
)

// DefaultConfig has greylisting and per-user rate limits on; checks that need
// the directory, DNS lists or a GeoIP file are off until configured.
func DefaultConfig() Config {
	return Config{
		Listen:         config.Listener{Address: "127.0.0.1:10040"},
		Checks:         slices.Clone(allChecks),
		StoreFailure:   FailOpen,
		MaxLineLength:  DefaultMaxLineLength,
		MaxAttributes:  DefaultMaxAttributes,
		IdleTimeout:    config.Duration(10 * time.Minute),
		ReadTimeout:    config.Duration(30 * time.Second),
		WriteTimeout:   config.Duration(30 * time.Second),
		RequestTimeout: config.Duration(20 * time.Second),
		MaxConnections: 1000,
		Access: AccessConfig{
			AllowAction: "DUNNO",
			DenyAction:  "REJECT 5.7.1 Access denied",
		},
		Recipients: RecipientsConfig{
			RecipientDelimiter: "+",
			UnknownAction:      "550 5.1.1 User unknown",
			DisabledAction:     "550 5.2.1 Mailbox disabled",
		},
		SenderLogin: SenderLoginConfig{
			RecipientDelimiter: "+",
			MismatchAction:     "553 5.7.1 Sender address not owned by user {login}",
		},
		DNSBL: DNSBLConfig{
			Lists:     dnsbl.DefaultConfig(),
			Threshold: 1,
			Action:    "554 5.7.1 Service unavailable; client [{client}] blocked using {lists}",
		},
		SPF: SPFConfig{
			ExemptNetworks:  []string{"127.0.0.0/8", "::1/128"},
			FailAction:      "550 5.7.23 SPF validation failed for {sender} from [{client}]",
			SoftFailAction:  "DUNNO",
			TempErrorAction: "DEFER_IF_PERMIT 4.7.24 SPF temporary error, try again later",
			PermErrorAction: "DUNNO",
		},
		Greylist: GreylistConfig{
			Enabled:               true,
			Delay:                 config.Duration(300 * time.Second),
			RetryWindow:           config.Duration(48 * time.Hour),
			MaxAge:                config.Duration(35 * 24 * time.Hour),
			IPv4Prefix:            24,
			IPv6Prefix:            64,
			AutoWhitelistAfter:    5,
			AutoWhitelistInterval: config.Duration(time.Hour),
			ExemptNetworks:        []string{"127.0.0.0/8", "::1/128"},
			ExemptRecipients:      []string{"postmaster@", "abuse@"},
			RecipientDelimiter:    "+",
			Action:                "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in {delay} seconds",
			AddHeader:             true,
		},
		RateLimit: RateLimitConfig{
			Enabled: true,
			Limits: []RateLimit{
				{Name: "user-hour", Key: KeySASLUsername, Messages: 100, Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 Message rate limit exceeded, try again later"},
				{Name: "user-day", Key: KeySASLUsername, Messages: 1000, Window: config.Duration(24 * time.Hour), Action: "DEFER 4.7.1 Daily message limit exceeded, try again later"},
			},
		},
	}
}

// Validate checks the direct fields; the sections validate themselves.
func (c Config) Validate() error {
	var errs []error
	if c.Listen.Address == "" {
		errs = append(errs, config.Errorf("listen.address", "must be set", "e.g. 127.0.0.1:10040 or unix:/var/spool/postfix/private/policy"))
	}
	seen := map[string]bool{}
	for i, n := range c.Checks {
		f := fmt.Sprintf("checks[%d]", i)
		switch {
		case !slices.Contains(allChecks, n):
			errs = append(errs, config.Errorf(f, fmt.Sprintf("unknown check %q", n), "known: "+strings.Join(allChecks, ", ")))
		case seen[n]:
			errs = append(errs, config.Errorf(f, fmt.Sprintf("%q listed twice", n), ""))
		}
		seen[n] = true
	}
	if c.StoreFailure != FailOpen && c.StoreFailure != FailClosed {
		errs = append(errs, config.Errorf("store_failure", fmt.Sprintf("%q is neither open nor closed", c.StoreFailure), "open answers DUNNO, closed answers DEFER_IF_PERMIT"))
	}
	if c.MaxLineLength < 512 || c.MaxLineLength > 16<<20 {
		errs = append(errs, config.Errorf("max_line_length", "must be between 512 bytes and 16MB", "the default is 64KB"))
	}
	if c.MaxAttributes < 10 || c.MaxAttributes > 10000 {
		errs = append(errs, config.Errorf("max_attributes", "must be between 10 and 10000", "Postfix 3.12 sends 31; the default is 100"))
	}
	for _, d := range []struct {
		name string
		v    config.Duration
	}{{"idle_timeout", c.IdleTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"request_timeout", c.RequestTimeout}} {
		if d.v <= 0 {
			errs = append(errs, config.Errorf(d.name, "must be positive", ""))
		}
	}
	if c.MaxConnections < 1 {
		errs = append(errs, config.Errorf("max_connections", "must be at least 1", ""))
	}
	return config.Join(errs...)
}

// Validate checks the access section.
func (c AccessConfig) Validate() error {
	errs := []error{validNets("allow_networks", c.AllowNetworks), validNets("deny_networks", c.DenyNetworks),
		validAction("allow_action", c.AllowAction), validAction("deny_action", c.DenyAction),
		validCountries("deny_countries", c.DenyCountries), validCountries("allow_countries", c.AllowCountries)}
	if c.GeoIPDatabase == "" && (len(c.DenyCountries) > 0 || len(c.AllowCountries) > 0) {
		errs = append(errs, config.Errorf("geoip_database", "country lists need a database", "a MaxMind GeoLite2-Country .mmdb file"))
	}
	return config.Join(errs...)
}

// Validate checks the recipients section.
func (c RecipientsConfig) Validate() error {
	errs := []error{validAction("unknown_action", c.UnknownAction), validAction("disabled_action", c.DisabledAction)}
	if c.Enabled && len(c.LocalDomains) == 0 {
		errs = append(errs, config.Errorf("local_domains", "must list the domains whose users the directory knows", ""))
	}
	return config.Join(errs...)
}

// Validate checks the sender_login section.
func (c SenderLoginConfig) Validate() error {
	return validAction("mismatch_action", c.MismatchAction)
}

// Validate checks the dnsbl section (the lists validate themselves).
func (c DNSBLConfig) Validate() error {
	errs := []error{validAction("action", c.Action)}
	if c.Enabled && len(c.Lists.Zones) == 0 {
		errs = append(errs, config.Errorf("lists.zones", "no DNS lists configured", "add zones or disable the check"))
	}
	if c.Threshold <= 0 {
		errs = append(errs, config.Errorf("threshold", "must be positive", "postscreen's default is 1"))
	}
	return config.Join(errs...)
}

// Validate checks the spf section.
func (c SPFConfig) Validate() error {
	return config.Join(validNets("exempt_networks", c.ExemptNetworks), validAction("fail_action", c.FailAction),
		validAction("softfail_action", c.SoftFailAction), validAction("temperror_action", c.TempErrorAction),
		validAction("permerror_action", c.PermErrorAction))
}

// Validate checks the greylist section.
func (c GreylistConfig) Validate() error {
	errs := []error{validNets("exempt_networks", c.ExemptNetworks), validAction("action", c.Action)}
	if c.Delay < 0 {
		errs = append(errs, config.Errorf("delay", "must not be negative", ""))
	}
	if c.RetryWindow <= c.Delay {
		errs = append(errs, config.Errorf("retry_window", "must be longer than delay", "postgrey's default is 2d"))
	}
	if c.MaxAge <= c.RetryWindow {
		errs = append(errs, config.Errorf("max_age", "must be longer than retry_window", "postgrey's default is 35d"))
	}
	if c.IPv4Prefix < 8 || c.IPv4Prefix > 32 {
		errs = append(errs, config.Errorf("ipv4_prefix", "must be between 8 and 32", "24 as postgrey"))
	}
	if c.IPv6Prefix < 16 || c.IPv6Prefix > 128 {
		errs = append(errs, config.Errorf("ipv6_prefix", "must be between 16 and 128", "64 as postgrey"))
	}
	if c.AutoWhitelistAfter < 0 || c.AutoWhitelistInterval < 0 {
		errs = append(errs, config.Errorf("auto_whitelist_after", "must not be negative", "0 disables the auto-whitelist"))
	}
	if a, err := ParseAction(c.Action); err == nil && !a.Final() {
		errs = append(errs, config.Errorf("action", "must defer or reject", "e.g. DEFER_IF_PERMIT text"))
	}
	return config.Join(errs...)
}

// Validate checks the ratelimit section's own fields.
func (c RateLimitConfig) Validate() error {
	seen := map[string]bool{}
	var errs []error
	for i, l := range c.Limits {
		if seen[l.Name] {
			errs = append(errs, config.Errorf(fmt.Sprintf("limits[%d].name", i), fmt.Sprintf("%q used twice", l.Name), "names key the counters"))
		}
		seen[l.Name] = true
	}
	if c.Enabled && len(c.Limits) == 0 {
		errs = append(errs, config.Errorf("limits", "no limits configured", "add one or disable the check"))
	}
	return config.Join(errs...)
}

// Validate checks one limit.
func (l RateLimit) Validate() error {
	var errs []error
	if l.Name == "" || strings.ContainsAny(l.Name, ": \t") {
		errs = append(errs, config.Errorf("name", "must be a non-empty word without ':' or spaces", "e.g. user-hour"))
	}
	switch l.Key {
	case KeySASLUsername, KeySender, KeyClientAddress:
	default:
		errs = append(errs, config.Errorf("key", fmt.Sprintf("unknown key %q", l.Key), "sasl_username, sender or client_address"))
	}
	if l.Messages <= 0 && l.Recipients <= 0 {
		errs = append(errs, config.Errorf("messages", "set messages and/or recipients above 0", ""))
	}
	if l.Messages < 0 || l.Recipients < 0 {
		errs = append(errs, config.Errorf("recipients", "must not be negative", ""))
	}
	if l.Window < config.Duration(time.Second) {
		errs = append(errs, config.Errorf("window", "must be at least 1s", "e.g. 1h or 1d"))
	}
	if err := validAction("action", l.Action); err != nil {
		errs = append(errs, err)
	} else if a, _ := ParseAction(l.Action); !a.Final() {
		errs = append(errs, config.Errorf("action", "must defer, reject or hold", "DEFER, REJECT, HOLD or a 4xx/5xx reply"))
	}
	return config.Join(errs...)
}

func validAction(field, s string) error {
	if _, err := ParseAction(s); err != nil {
		return config.Errorf(field, err.Error(), "e.g. \"REJECT 5.7.1 text\", \"DEFER_IF_PERMIT text\", \"450 4.7.1 text\"")
	}
	return nil
}

func validNets(field string, nets []string) error {
	var errs []error
	for i, n := range nets {
		if _, err := parsePrefix(n); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s[%d]", field, i), err.Error(), "write 192.0.2.0/24, 2001:db8::/32 or a single address"))
		}
	}
	return config.Join(errs...)
}

func validCountries(field string, cs []string) error {
	var errs []error
	for i, c := range cs {
		if len(c) != 2 || strings.ToUpper(c) != c || strings.ContainsFunc(c, func(r rune) bool { return r < 'A' || r > 'Z' }) {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("%q is not an ISO 3166-1 alpha-2 code", c), "e.g. CN, RU, US"))
		}
	}
	return config.Join(errs...)
}

// NeedsStore reports whether an enabled check keeps state.
func (c Config) NeedsStore() bool {
	return (c.Greylist.Enabled && slices.Contains(c.Checks, CheckGreylist)) ||
		(c.RateLimit.Enabled && slices.Contains(c.Checks, CheckRateLimit))
}

// NeedsDirectory reports whether an enabled check looks users up.
func (c Config) NeedsDirectory() bool {
	return (c.Recipients.Enabled && slices.Contains(c.Checks, CheckRecipients)) ||
		(c.SenderLogin.Enabled && slices.Contains(c.Checks, CheckSenderLogin))
}
