package policyd

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

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
	// DNS must leave time for the checks after it: a request whose DNS used
	// the whole budget answers a temporary failure instead of its verdict.
	var dns time.Duration
	if c.SPF.Enabled || (c.Greylist.Enabled && c.Greylist.ExemptSPFPass) {
		dns += c.SPF.Timeout.D()
	}
	if c.DNSBL.Enabled {
		dns += c.DNSBL.Lists.Budget.D()
	}
	if c.RequestTimeout > 0 && dns >= c.RequestTimeout.D() {
		errs = append(errs, config.Errorf("request_timeout", fmt.Sprintf("must exceed spf.timeout + dnsbl.lists.budget (%s)", dns),
			"raise request_timeout or lower the DNS timeouts"))
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
	errs := []error{validNets("exempt_networks", c.ExemptNetworks), validAction("fail_action", c.FailAction),
		validAction("softfail_action", c.SoftFailAction), validAction("temperror_action", c.TempErrorAction),
		validAction("permerror_action", c.PermErrorAction)}
	if a, err := ParseAction(c.TempErrorAction); err == nil && a.Permanent() {
		// A temperror is DNS failing, not the sender's verdict: RFC 7208
		// §8.6 allows accepting or a temporary rejection only.
		errs = append(errs, config.Errorf("temperror_action", "must not reject permanently: a temperror is a DNS failure (RFC 7208 §8.6)",
			"DEFER_IF_PERMIT 4.7.24 text, 451 4.4.3 text, or DUNNO"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive", "10s; below request_timeout"))
	}
	return config.Join(errs...)
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
	if a, err := ParseAction(c.Action); err == nil && !a.Refuses() {
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
	if c.IPv4Prefix < 8 || c.IPv4Prefix > 32 {
		errs = append(errs, config.Errorf("ipv4_prefix", "must be between 8 and 32", "32 counts each IPv4 client alone"))
	}
	if c.IPv6Prefix < 16 || c.IPv6Prefix > 128 {
		errs = append(errs, config.Errorf("ipv6_prefix", "must be between 16 and 128", "64: a host's IPv6 network"))
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
	} else if a, _ := ParseAction(l.Action); !a.Refuses() && a.Verb != VerbHold {
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
