//go:build unix

package daemon

import "syscall"

func setUmask(m int) int { return syscall.Umask(m) }
