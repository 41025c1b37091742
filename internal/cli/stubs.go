package cli

// Temporary stand-ins for commands whose packages are still being written.
// When you add your real constructor/builder in your own file, delete its stub here.

import (
	"errors"

	"github.com/spf13/cobra"
)

var errNotBuilt = errors.New("not built yet")

func stubCmd(use string) *cobra.Command {
	return &cobra.Command{Use: use, Hidden: true, RunE: func(*cobra.Command, []string) error { return errNotBuilt }}
}

