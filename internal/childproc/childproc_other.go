//go:build !linux

// Package childproc starts the helper processes tests run (charon, etcd).
package childproc

import "os/exec"

// Start starts cmd. Only Linux has a parent-death signal; elsewhere a
// child may outlive a test binary that dies without its cleanups.
func Start(cmd *exec.Cmd) error { return cmd.Start() }
