// Package diropen builds the configured directory backend. It is separate from
// package directory because it imports the backends, which import directory.
package diropen

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/directory/ldap"
	"github.com/dovetail-mail/dovetail/directory/static"
	"github.com/dovetail-mail/dovetail/internal/config"
)

// Config is the top-level `directory:` section.
type Config struct {
	// Backend is "static" (a users file; the default) or "ldap".
	Backend string        `yaml:"backend"`
	Static  static.Config `yaml:"static"`
	LDAP    ldap.Config   `yaml:"ldap"`
}

// DefaultConfig returns the defaults: the static backend with the embedded users.
func DefaultConfig() Config {
	return Config{Backend: "static", Static: static.DefaultConfig(), LDAP: ldap.DefaultConfig()}
}

// Validate checks the backend choice. The loader validates the nested sections
// too; the LDAP section is only validated when it is the chosen backend (it has
// required fields an unused section would not set).
func (c *Config) Validate() error {
	switch c.Backend {
	case "static":
		return nil
	case "ldap":
		if c.LDAP.Unused() {
			return config.Errorf("ldap.uris", "backend ldap needs ldap.uris and ldap.base_dn", "e.g. uris: [ldap://127.0.0.1:389]")
		}
		return nil
	}
	return config.Errorf("backend", fmt.Sprintf("unknown backend %q", c.Backend), "static or ldap")
}

// Open builds the configured directory. It does not need the backend to be up.
func Open(_ context.Context, cfg Config, log *slog.Logger) (directory.Directory, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch cfg.Backend {
	case "static":
		return static.New(cfg.Static, log.With("directory", "static"))
	case "ldap":
		return ldap.New(cfg.LDAP, log.With("directory", "ldap"))
	}
	return nil, fmt.Errorf("directory: unknown backend %q", cfg.Backend)
}
