package lmtpd

import (
	"fmt"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// Config is the lmtpd section of the configuration file.
type Config struct {
	// Listen: "unix:/var/spool/postfix/private/dovetail-lmtp" or "127.0.0.1:24".
	Listen config.Listener `yaml:"listen"`
	// AlsoListen is an optional second listener, so lmtpd serves a unix socket
	// (Postfix) and TCP (another host, a load test) at once.
	AlsoListen config.Listener `yaml:"also_listen"`
	// Hostname is used in the greeting, Received headers and Maildir file names
	// (default: the system host name).
	Hostname string `yaml:"hostname"`
	// MaxMessageSize bounds DATA (552 5.3.4 above it). Messages are held in memory.
	MaxMessageSize config.Size `yaml:"max_message_size"`
	// MaxRecipients per transaction (Postfix sends at most lmtp_destination_recipient_limit).
	MaxRecipients int `yaml:"max_recipients"`
	// MaxConnections bounds concurrent LMTP sessions, each of which may hold a
	// message in memory (Dovecot's lmtp process_limit); past it a connection
	// is answered 421 and Postfix retries.
	MaxConnections int             `yaml:"max_connections"`
	ReadTimeout    config.Duration `yaml:"read_timeout"`
	WriteTimeout   config.Duration `yaml:"write_timeout"`
	// RecipientDelimiter: each character separates the user from a detail
	// ("alice+lists@" → alice). Empty disables subaddressing.
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	// MailLocation is the Maildir of a user: "~" is the user's home; %u the login,
	// %n its local part, %d its domain (else the recipient's), %h the home.
	MailLocation string `yaml:"mail_location"`
	// Fsync makes each delivery durable before it is acknowledged (as Dovecot's
	// mail_fsync = optimized). Only turn it off for throw-away mail.
	Fsync bool `yaml:"fsync"`
	// MailUID and MailGID own the mail of users for whom the directory has no uid
	// (virtual users; Dovecot's mail_uid/mail_gid, e.g. vmail) when lmtpd runs as
	// root. 0 = unset: such mail stays root's, which Dovecot cannot read.
	MailUID int `yaml:"mail_uid"`
	MailGID int `yaml:"mail_gid"`
	// HardLink shares one file between recipients of one message on one filesystem.
	HardLink bool `yaml:"hard_link"`
	// AutocreateFolders lets fileinto create missing folders even without :create
	// (Dovecot's lda_mailbox_autocreate).
	AutocreateFolders bool `yaml:"autocreate_folders"`
	// SaveToDetailMailbox delivers alice+lists@ into the folder "lists" when it
	// exists (Dovecot's lmtp_save_to_detail_mailbox), falling back to INBOX.
	SaveToDetailMailbox bool `yaml:"save_to_detail_mailbox"`
	// DefaultQuota applies to users without a quota from the directory (0 = none).
	DefaultQuota config.Size `yaml:"default_quota"`
	// QuotaFullTempfail answers 452 4.2.2 instead of 552 5.2.2 for a full mailbox.
	QuotaFullTempfail bool `yaml:"quota_full_tempfail"`
	// AddReceivedHeader prepends a Received header (Return-Path and, for a single
	// recipient, Delivered-To are always added).
	AddReceivedHeader bool `yaml:"add_received_header"`
	// QuarantineScore quarantines every message whose X-Spam-Score is at least this
	// value, without any Sieve script (0 = off).
	QuarantineScore float64 `yaml:"quarantine_score"`
	// DuplicatePeriod suppresses a second delivery of the same Message-ID to the same
	// user within the period (0 = off).
	DuplicatePeriod config.Duration `yaml:"duplicate_period"`
	Sieve           SieveConfig     `yaml:"sieve"`
	Vacation        VacationConfig  `yaml:"vacation"`
	Submission      SubmitConfig    `yaml:"submission"`
}

// SieveConfig locates scripts (Pigeonhole layout).
type SieveConfig struct {
	Enabled bool `yaml:"enabled"`
	// Before and After are admin scripts run around the user's script.
	Before []string `yaml:"before"`
	After  []string `yaml:"after"`
	// UserScript is the active personal script (a file or a symlink into UserDir).
	UserScript string `yaml:"user_script"`
	// UserDir holds the user's scripts (include :personal).
	UserDir string `yaml:"user_dir"`
	// MaxScriptSize bounds each script file.
	MaxScriptSize config.Size `yaml:"max_script_size"`
	// Settings override Pigeonhole-style settings, e.g. sieve_spamtest_max_value
	// (see DefaultSieveSettings).
	Settings map[string]string `yaml:"settings"`
}

// VacationConfig bounds vacation periods (RFC 5230 :days/:seconds).
type VacationConfig struct {
	DefaultPeriod config.Duration `yaml:"default_period"`
	MinPeriod     config.Duration `yaml:"min_period"`
	MaxPeriod     config.Duration `yaml:"max_period"`
}

// SubmitConfig says how redirect and vacation messages leave: through Postfix's
// sendmail binary or by SMTP to a submission/smtpd port.
type SubmitConfig struct {
	Method   string          `yaml:"method"` // "sendmail" or "smtp"
	Sendmail string          `yaml:"sendmail"`
	Address  string          `yaml:"address"` // host:port for smtp
	Timeout  config.Duration `yaml:"timeout"`
}

// DefaultConfig returns Dovecot-like defaults.
func DefaultConfig() Config {
	return Config{
		// Loopback TCP like the other daemons' defaults; production points Postfix at
		// a unix socket under /var/spool/postfix/private.
		Listen:             config.Listener{Address: "127.0.0.1:10024"},
		MaxMessageSize:     50 << 20,
		MaxRecipients:      1000,
		MaxConnections:     100,
		ReadTimeout:        config.Duration(10 * time.Minute),
		WriteTimeout:       config.Duration(5 * time.Minute),
		RecipientDelimiter: "+",
		MailLocation:       "~/Maildir",
		Fsync:              true,
		HardLink:           true,
		AddReceivedHeader:  true,
		DuplicatePeriod:    config.Duration(24 * time.Hour),
		Sieve: SieveConfig{
			Enabled:       true,
			UserScript:    "~/.dovecot.sieve",
			UserDir:       "~/sieve",
			MaxScriptSize: 1 << 20,
		},
		Vacation: VacationConfig{
			DefaultPeriod: config.Duration(7 * 24 * time.Hour),
			MinPeriod:     config.Duration(24 * time.Hour),
			MaxPeriod:     config.Duration(90 * 24 * time.Hour),
		},
		Submission: SubmitConfig{Method: "sendmail", Sendmail: "/usr/sbin/sendmail", Timeout: config.Duration(30 * time.Second)},
	}
}

// Validate checks lmtpd's direct fields.
func (c Config) Validate() error {
	var errs []error
	if c.Listen.Address == "" {
		errs = append(errs, config.Errorf("listen.address", "is required", "unix:/var/spool/postfix/private/dovetail-lmtp or 127.0.0.1:10024"))
	}
	if c.MaxMessageSize <= 0 {
		errs = append(errs, config.Errorf("max_message_size", "must be positive", "e.g. 50MB"))
	}
	if c.MaxRecipients <= 0 {
		errs = append(errs, config.Errorf("max_recipients", "must be positive", "Postfix sends at most 50 by default"))
	}
	if c.MaxConnections <= 0 {
		errs = append(errs, config.Errorf("max_connections", "must be positive", "e.g. 100 (Dovecot's lmtp process_limit); Postfix opens up to lmtp_destination_concurrency_limit"))
	}
	switch loc := c.MailLocation; {
	case !strings.HasPrefix(loc, "~/") && !strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "%h/"):
		errs = append(errs, config.Errorf("mail_location", fmt.Sprintf("%q is neither ~/path nor /path", loc), "write ~/Maildir"))
	case strings.HasPrefix(loc, "/") && !strings.Contains(loc, "%u") && !strings.Contains(loc, "%n"):
		errs = append(errs, config.Errorf("mail_location", fmt.Sprintf("%q names one Maildir for every user", loc),
			"use ~/Maildir or a per-user path such as /var/vmail/%d/%n/Maildir"))
	}
	if strings.ContainsAny(c.RecipientDelimiter, "@ \t") {
		errs = append(errs, config.Errorf("recipient_delimiter", "must not contain @ or blanks", "write +"))
	}
	switch {
	case c.MailUID < 0 || c.MailGID < 0:
		errs = append(errs, config.Errorf("mail_uid", "mail_uid and mail_gid must not be negative", ""))
	case (c.MailUID > 0) != (c.MailGID > 0):
		errs = append(errs, config.Errorf("mail_uid", "set mail_uid and mail_gid together", "e.g. the numeric uid and gid of vmail"))
	}
	if c.QuarantineScore < 0 {
		errs = append(errs, config.Errorf("quarantine_score", "must be 0 (off) or positive", ""))
	}
	return config.Join(errs...)
}

// Validate checks the submission method.
func (c SubmitConfig) Validate() error {
	switch c.Method {
	case "sendmail":
		if c.Sendmail == "" {
			return config.Errorf("sendmail", "path is empty", "write /usr/sbin/sendmail")
		}
	case "smtp":
		if !strings.Contains(c.Address, ":") {
			return config.Errorf("address", fmt.Sprintf("%q is not host:port", c.Address), "write 127.0.0.1:25")
		}
	default:
		return config.Errorf("method", fmt.Sprintf("unknown method %q", c.Method), "use sendmail or smtp")
	}
	return nil
}

// Validate checks the period bounds.
func (c VacationConfig) Validate() error {
	if c.MinPeriod > c.MaxPeriod && c.MaxPeriod > 0 {
		return config.Errorf("min_period", "is larger than max_period", "")
	}
	return nil
}

// expandHome replaces a leading "~" with home.
func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return home + p[1:]
	}
	return p
}
