// Package childproc starts the helper processes tests run (charon, etcd)
// so that none outlives the test binary.
package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd with SIGKILL as its parent-death signal, so it dies
// when the test binary dies without running its cleanups (a panic or a
// -timeout).
//
// Pdeathsig fires when the OS thread that forked the child exits, not the
// process. Go ends threads: one whose goroutine exits while locked to it
// (what a netns switch in the same binary does) is destroyed, and a child
// forked from it was SIGKILLed mid-test. So every child is forked from a
// thread locked to a goroutine that never exits.
func Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	spawn <- func() { errc <- cmd.Start() }
	return <-errc
}

var spawn = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread()
		for f := range spawn {
			f()
		}
	}()
}
