package swan

import "syscall"

// procAttr kills charon when the test binary dies without running its
// cleanups (a panic or a -timeout), so no daemon outlives its test.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
