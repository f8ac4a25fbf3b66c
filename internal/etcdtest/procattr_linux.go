package etcdtest

import (
	"os/exec"
	"runtime"
	"syscall"
)

// procAttr kills etcd when the test binary dies without running its
// cleanups (a panic or a -timeout), so no server outlives its test.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// Pdeathsig fires when the forking OS thread exits, not the process; a
// goroutine that ends locked to its thread destroys it (netns switches
// do). So etcd is forked from a thread locked to a goroutine that never
// exits.
var spawn = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread()
		for f := range spawn {
			f()
		}
	}()
}

func startCmd(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	spawn <- func() { errc <- cmd.Start() }
	return <-errc
}
