//go:build !linux

package maildir

import "errors"

// runAs would deliver with the user's credentials; only Linux has per-thread
// ones (setfsuid). Failing is safer than writing as root into a directory the
// user controls: deliveries for which root would have to chown files to the
// user are temporary failures here.
func runAs(uid, gid int, fn func() error) error {
	return errors.New("maildir: delivering as the user needs Linux (setfsuid)")
}
