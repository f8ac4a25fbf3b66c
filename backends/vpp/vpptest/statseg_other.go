//go:build vpp && !linux

package vpptest

import (
	"errors"
	"net"
)

// The fake stats segment needs memfd_create: Linux only, as VPP is.
type statSegment struct{ file interface{ Fd() uintptr } }

func newStatSegment(int) (*statSegment, error) {
	return nil, errors.New("vpptest: the fake stats segment needs Linux (memfd)")
}
func (*statSegment) add(uint32, uint64, uint64)         {}
func (*statSegment) zero(uint32)                        {}
func (*statSegment) read(uint32) (uint64, uint64)       { return 0, 0 }
func (*statSegment) close()                             {}
func serveStats(*net.UnixListener, func() *statSegment) {}
