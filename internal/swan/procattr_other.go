//go:build !linux

package swan

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
