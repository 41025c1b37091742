// Package ruleset embeds dovetail's default rules (*.cf, SpamAssassin syntax).
package ruleset

import "embed"

// FS holds the default rule files, loaded in name order.
//
//go:embed *.cf
var FS embed.FS
