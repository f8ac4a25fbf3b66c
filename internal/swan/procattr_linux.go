package swan

import (
	"os/exec"
	"runtime"
	"syscall"
)

// procAttr kills charon when the test binary dies without running its
// cleanups (a panic or a -timeout), so no daemon outlives its test.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// Pdeathsig fires when the OS thread that forked the child exits, not the
// process. Go ends threads: one whose goroutine exits while locked to it
// (what a netns switch in the same binary does) is destroyed, and a charon
// forked from it was SIGKILLed mid-test. So charon is forked from a thread
// locked to a goroutine that never exits.
var spawn = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread()
		for f := range spawn {
			f()
		}
	}()
}

// startCmd starts cmd from the spawner thread.
func startCmd(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	spawn <- func() { errc <- cmd.Start() }
	return <-errc
}
