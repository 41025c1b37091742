//go:build !linux

package testenv

import "os/exec"

// setPdeathsig is Linux-only; elsewhere Need skips (or fails with CI=true) anyway.
func setPdeathsig(*exec.Cmd) {}
