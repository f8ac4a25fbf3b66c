//go:build unix

package control

import "syscall"

// umask sets the process's umask and returns the old one. It is
// process-wide: Listen holds the strict one only around the bind.
func umask(m int) int { return syscall.Umask(m) }
