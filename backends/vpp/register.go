//go:build vpp

package vpp

import "github.com/keyplane/keyplane/kernelops"

func init() { kernelops.Register(Name, Open) }
