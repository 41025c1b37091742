package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/policyd"
)

// checkUsersFile refuses a static directory without a users file in a config
// file whose daemons look users up. Only the embedded default may fall back to
// the demo users: a production host whose users file went missing would
// otherwise accept demo/demo for SMTP AUTH and relay for anyone who knows it.
// A daemon run alone that is not in `daemons:` gets the same refusal when it
// opens the directory (openDirectory), without a line.
func (c *Config) checkUsersFile() error {
	d := c.Directory
	if d.Backend != "static" || d.Static.Path != "" || c.embedded || c.DataDir == "" || !c.usesDirectory() {
		return nil
	}
	p := filepath.Join(c.DataDir, "users")
	if fileExists(p) {
		return nil
	}
	return config.Errorf("directory.static.path", fmt.Sprintf("no users file: path is not set and %s does not exist", p),
		"set directory.static.path to a users file (Dovecot passwd-file format) or create "+p+
			"; the demo users are only served without a config file")
}

// checkFiles checks that the files the configuration makes the daemons read
// exist and are readable, as they would find out at start or reload: `config
// check` must not pass a file that `serve` then refuses.
func (c *Config) checkFiles() error {
	var errs []error
	check := func(field, path string, dirOK bool) {
		if path == "" {
			return
		}
		if err := readable(path, dirOK); err != nil {
			errs = append(errs, config.Errorf(field, err.Error(), ""))
		}
	}
	if c.Directory.Backend == "static" && c.Directory.Static.Path != "" {
		if _, err := os.Stat(c.Directory.Static.Path); err == nil { // a missing one is the section's own error
			check("directory.static.path", c.Directory.Static.Path, false)
		}
	}
	p := c.Policyd
	if slices.Contains(p.Checks, policyd.CheckAccess) && p.Access.Enabled {
		check("policyd.access.geoip_database", p.Access.GeoIPDatabase, false)
	}
	if slices.Contains(p.Checks, policyd.CheckGreylist) && p.Greylist.Enabled {
		check("policyd.greylist.exempt_clients_file", p.Greylist.ExemptClientsFile, false)
		check("policyd.greylist.exempt_recipients_file", p.Greylist.ExemptRecipientsFile, false)
	}
	if c.Lmtpd.Sieve.Enabled {
		for i, s := range c.Lmtpd.Sieve.Before {
			check(fmt.Sprintf("lmtpd.sieve.before[%d]", i), s, false)
		}
		for i, s := range c.Lmtpd.Sieve.After {
			check(fmt.Sprintf("lmtpd.sieve.after[%d]", i), s, false)
		}
	}
	for i, f := range c.Spam.RuleFiles {
		check(fmt.Sprintf("spam.rule_files[%d]", i), f, true)
	}
	return config.Join(errs...)
}

// readable opens path as the daemon will; a directory passes only if dirOK.
func readable(path string, dirOK bool) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("%s: %v", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if fi.IsDir() && !dirOK {
		return fmt.Errorf("%s is a directory, not a file", path)
	}
	return nil
}

// usesDirectory reports whether a daemon listed in `daemons:` looks users up.
func (c *Config) usesDirectory() bool {
	for _, d := range c.Daemons {
		switch {
		case d == "authd", d == "lmtpd":
			return true
		case d == "policyd" && c.Policyd.NeedsDirectory():
			return true
		}
	}
	return false
}
