//go:build !linux

package nokernel

import (
	"net"
	"net/netip"
)

// oobSize: no packet-info control messages are read on this OS.
const oobSize = 0

// enablePktinfo is a no-op here: a wildcard-bound socket reports its
// bound (unspecified) address as the local one and lets the OS pick the
// source address on send. Bind to a specific address to avoid that.
func enablePktinfo(*net.UDPConn, bool) error { return nil }

func pktinfoDst([]byte) (netip.Addr, bool) { return netip.Addr{}, false }

func pktinfoSrc(netip.Addr, bool) []byte { return nil }
