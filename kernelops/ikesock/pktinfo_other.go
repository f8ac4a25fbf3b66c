//go:build !linux && !freebsd && !netbsd && !openbsd && !darwin

package ikesock

import "net/netip"

// Elsewhere no packet info is asked for: a wildcard socket reports its
// bound (unspecified) address as the local one and leaves the source to
// the OS. Bind to a specific address to avoid that.

func enableDstInfo(int, bool) error { return nil }

type dstReader struct{}

func (*dstReader) dst([]byte, bool) (netip.Addr, bool) { return netip.Addr{}, false }

func marshalSrc(netip.Addr) []byte { return nil }
