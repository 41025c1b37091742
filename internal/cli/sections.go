package cli

import (
	"github.com/dovetail-mail/dovetail/lmtpd"
	"github.com/dovetail-mail/dovetail/policyd"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/dovetail-mail/dovetail/spam"
)

// Sections holds one config section per component, each owned by its package.
// Add a section here when a package grows a Config (yaml key = package name).
type Sections struct {
	Spam       spam.Config       `yaml:"spam"`
	Policyd    policyd.Config    `yaml:"policyd"`
	Lmtpd      lmtpd.Config      `yaml:"lmtpd"`
	Quarantine quarantine.Config `yaml:"quarantine"`
}

func defaultSections() Sections {
	return Sections{Spam: spam.DefaultConfig(), Policyd: policyd.DefaultConfig(),
		Lmtpd: lmtpd.DefaultConfig(), Quarantine: quarantine.DefaultConfig()}
}
