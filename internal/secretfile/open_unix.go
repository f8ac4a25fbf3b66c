//go:build unix

package secretfile

import "syscall"

const openFlags = syscall.O_NONBLOCK
