package testenv

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel send SIGTERM to the child when the forking thread dies.
func setPdeathsig(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
}
