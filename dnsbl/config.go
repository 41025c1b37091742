package dnsbl

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// Kind says what a zone lists.
type Kind string

const (
	// KindIP zones are queried with the client address, octets reversed
	// (nibbles for IPv6): 2.0.0.127.zen.example.
	KindIP Kind = "ip"
	// KindDomain zones (URIBL, DBL) are queried with a domain name:
	// example.com.dbl.example.
	KindDomain Kind = "domain"
)

// Config configures the lists the checker queries.
type Config struct {
	Zones []Zone `yaml:"zones"`
	// Timeout bounds one DNS query.
	Timeout config.Duration `yaml:"timeout"`
	// Budget bounds all queries made for one message; what has not answered by
	// then counts as a temporary error.
	Budget config.Duration `yaml:"budget"`
	// MaxQueries bounds the queries made for one message (after dedup).
	MaxQueries int `yaml:"max_queries"`
	// Concurrency bounds parallel queries for one message.
	Concurrency int `yaml:"concurrency"`
	// CacheTTL is how long an answer (listed or not) is reused; 0 disables the cache.
	CacheTTL config.Duration `yaml:"cache_ttl"`
	// CacheSize bounds the number of cached answers.
	CacheSize int `yaml:"cache_size"`
}

// Zone is one DNS list.
type Zone struct {
	Zone string `yaml:"zone"`
	Kind Kind   `yaml:"kind"`
	// Symbol and Score apply to any listed answer no Return entry matches;
	// 127.0.0.1 (URIBL/SURBL "query refused") is not a listing. An empty
	// Symbol means "only the Return entries count".
	Symbol string  `yaml:"symbol"`
	Score  float64 `yaml:"score"`
	// IPv6 enables queries for IPv6 client addresses (many lists do not
	// carry them and waste a query).
	IPv6    bool     `yaml:"ipv6"`
	Returns []Return `yaml:"returns"`
}

// Return maps answers of a zone to a symbol: either an exact address
// ("127.0.0.2") or a bit mask tested against the last octet (SURBL/URIBL style
// "127.0.0.x" where each bit is one list; 127.0.0.1 never matches a mask).
type Return struct {
	Code    string  `yaml:"code"`
	Bitmask uint8   `yaml:"bitmask"`
	Symbol  string  `yaml:"symbol"`
	Score   float64 `yaml:"score"`
}

// DefaultConfig has no zones (public lists have usage policies the admin must
// accept) and conservative limits.
func DefaultConfig() Config {
	return Config{
		Timeout:     config.Duration(2 * time.Second),
		Budget:      config.Duration(5 * time.Second),
		MaxQueries:  40,
		Concurrency: 8,
		CacheTTL:    config.Duration(5 * time.Minute),
		CacheSize:   10000,
	}
}

// Validate checks the direct fields.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive", "e.g. 2s"))
	}
	if c.Budget < c.Timeout {
		errs = append(errs, config.Errorf("budget", "must be at least timeout", "e.g. 5s"))
	}
	if c.MaxQueries <= 0 {
		errs = append(errs, config.Errorf("max_queries", "must be positive", "e.g. 40"))
	}
	if c.Concurrency <= 0 {
		errs = append(errs, config.Errorf("concurrency", "must be positive", "e.g. 8"))
	}
	if c.CacheTTL < 0 || c.CacheSize < 0 {
		errs = append(errs, config.Errorf("cache_ttl", "cache_ttl and cache_size must not be negative", ""))
	}
	seen := map[string]bool{}
	for i, z := range c.Zones {
		if err := z.validate(); err != nil {
			errs = append(errs, config.Prefix(fmt.Sprintf("zones[%d]", i), err))
		}
		// Queries are made per normalised name: "zen.example." and
		// "Zen.example" are one zone, and a second entry would be dropped.
		key := string(z.Kind) + "/" + zoneName(z.Zone)
		if seen[key] {
			errs = append(errs, config.Errorf(fmt.Sprintf("zones[%d].zone", i), fmt.Sprintf("%q listed twice", z.Zone), "merge the return codes into one entry"))
		}
		seen[key] = true
	}
	return config.Join(errs...)
}

func (z Zone) validate() error {
	var errs []error
	name := strings.TrimSuffix(z.Zone, ".")
	if name == "" || strings.ContainsAny(name, " \t/@") || strings.Contains(name, "..") {
		errs = append(errs, config.Errorf("zone", fmt.Sprintf("%q is not a DNS zone", z.Zone), "e.g. zen.spamhaus.org"))
	}
	if z.Kind != KindIP && z.Kind != KindDomain {
		errs = append(errs, config.Errorf("kind", fmt.Sprintf("%q is neither ip nor domain", z.Kind), "ip for client-address lists, domain for URIBL/DBL"))
	}
	if z.Symbol == "" && len(z.Returns) == 0 {
		errs = append(errs, config.Errorf("symbol", "a zone needs a symbol or return codes", "e.g. symbol: RBL_EXAMPLE"))
	}
	for i, r := range z.Returns {
		f := fmt.Sprintf("returns[%d]", i)
		if r.Symbol == "" {
			errs = append(errs, config.Errorf(f+".symbol", "is empty", ""))
		}
		switch {
		case r.Code != "" && r.Bitmask != 0:
			errs = append(errs, config.Errorf(f, "code and bitmask are exclusive", ""))
		case r.Code == "" && r.Bitmask == 0:
			errs = append(errs, config.Errorf(f, "needs code or bitmask", "code: 127.0.0.2"))
		case r.Code != "":
			if a, err := netip.ParseAddr(r.Code); err != nil || !a.Is4() {
				errs = append(errs, config.Errorf(f+".code", fmt.Sprintf("%q is not an IPv4 address", r.Code), "code: 127.0.0.2"))
			}
		}
	}
	return config.Join(errs...)
}
