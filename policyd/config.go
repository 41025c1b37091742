package policyd

import (
	"slices"
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
	// "closed" (DEFER_IF_PERMIT: the client retries, nothing passes unchecked;
	// the default) or "open" (DUNNO, mail flows unchecked while it lasts).
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
	ExemptNetworks []string `yaml:"exempt_networks"`
	// Timeout bounds one SPF evaluation (all its DNS lookups); past it the
	// result is temperror. Keep it well below request_timeout so that the
	// checks after SPF (greylisting) still get to run when DNS is down.
	Timeout         config.Duration `yaml:"timeout"`
	FailAction      string          `yaml:"fail_action"`
	SoftFailAction  string          `yaml:"softfail_action"`
	TempErrorAction string          `yaml:"temperror_action"`
	PermErrorAction string          `yaml:"permerror_action"`
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
	// AutoWhitelistAfter whitelists a client address (as postgrey: not its
	// network) after that many retries that got through greylisting, each
	// counted at most once per AutoWhitelistInterval; 0 disables. The entry
	// lives MaxAge and is renewed (at most once per interval) while used.
	AutoWhitelistAfter    int             `yaml:"auto_whitelist_after"`
	AutoWhitelistInterval config.Duration `yaml:"auto_whitelist_interval"`
	// Exemptions. Authenticated clients are always exempt.
	ExemptNetworks []string `yaml:"exempt_networks"`
	// ExemptClients are client host names or domains (a domain matches its
	// subdomains), as in postgrey's whitelist_clients.
	ExemptClients []string `yaml:"exempt_clients"`
	// ExemptRecipients are "user@domain", "user@" or "domain" entries, read
	// as postgrey's whitelist_recipients (access(5) syntax): the first two
	// also match user+extension, a domain also its subdomains.
	ExemptRecipients []string `yaml:"exempt_recipients"`
	// Files in postgrey's whitelist format (one entry per line, # comments,
	// /regex/ entries); read at start and on every reload.
	ExemptClientsFile    string `yaml:"exempt_clients_file"`
	ExemptRecipientsFile string `yaml:"exempt_recipients_file"`
	// ExemptSPFPass skips greylisting when the sender's SPF record passes.
	ExemptSPFPass bool `yaml:"exempt_spf_pass"`
	// RecipientDelimiter: sender "user+tag@" is keyed as "user@", and a
	// recipient "user+tag@" is exempt where "user@" is (as postgrey).
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	Action             string `yaml:"action"`
	// AddHeader prepends "X-Greylist: delayed N seconds ..." on the first pass
	// (once per message, however many of its recipients waited).
	AddHeader bool `yaml:"add_header"`
}

// RateLimitConfig counts messages and recipients in sliding windows.
type RateLimitConfig struct {
	Enabled bool `yaml:"enabled"`
	// RecipientDelimiter: a sender "user+tag@" is counted as "user@", so a
	// compromised account cannot escape a per-sender limit by varying tags.
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	// IPv4Prefix/IPv6Prefix: client_address limits count per network of this
	// size. An IPv6 host usually has a whole /64 to rotate its source address
	// in, so counting single IPv6 addresses limits nothing; IPv4 counts by host.
	IPv4Prefix int         `yaml:"ipv4_prefix"`
	IPv6Prefix int         `yaml:"ipv6_prefix"`
	Limits     []RateLimit `yaml:"limits"`
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
		StoreFailure:   FailClosed,
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
			Timeout:         config.Duration(10 * time.Second),
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
			Enabled:            true,
			RecipientDelimiter: "+",
			IPv4Prefix:         32,
			IPv6Prefix:         64,
			Limits: []RateLimit{
				{Name: "user-hour", Key: KeySASLUsername, Messages: 100, Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 Message rate limit exceeded, try again later"},
				{Name: "user-day", Key: KeySASLUsername, Messages: 1000, Window: config.Duration(24 * time.Hour), Action: "DEFER 4.7.1 Daily message limit exceeded, try again later"},
			},
		},
	}
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
