package cli

import (
	"github.com/dovetail-mail/dovetail/authd"
	diropen "github.com/dovetail-mail/dovetail/directory/open"
	"github.com/dovetail-mail/dovetail/lmtpd"
	"github.com/dovetail-mail/dovetail/milter"
	"github.com/dovetail-mail/dovetail/policyd"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/authcheck"
	"github.com/dovetail-mail/dovetail/store"
)

// Sections holds one config section per component, each owned by its package.
// Add a section here when a package grows a Config (yaml key = package name).
type Sections struct {
	Store      store.Config      `yaml:"store"`
	Directory  diropen.Config    `yaml:"directory"`
	Authd      authd.Config      `yaml:"authd"`
	Spam       spam.Config       `yaml:"spam"`
	Policyd    policyd.Config    `yaml:"policyd"`
	Lmtpd      lmtpd.Config      `yaml:"lmtpd"`
	Quarantine quarantine.Config `yaml:"quarantine"`
	Milter     milter.Config     `yaml:"milter"`
	Authcheck  authcheck.Config  `yaml:"authcheck"`
}

func defaultSections() Sections {
	return Sections{Store: store.DefaultConfig(), Directory: diropen.DefaultConfig(), Authd: authd.DefaultConfig(), Spam: spam.DefaultConfig(), Policyd: policyd.DefaultConfig(),
		Lmtpd: lmtpd.DefaultConfig(), Quarantine: quarantine.DefaultConfig(),
		Milter: milter.DefaultConfig(), Authcheck: authcheck.DefaultConfig()}
}
