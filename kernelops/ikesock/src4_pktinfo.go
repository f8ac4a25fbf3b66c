//go:build linux || darwin

package ikesock

import (
	"net"

	"golang.org/x/net/ipv4"
)

// marshalSrc4 sets the IPv4 source with IP_PKTINFO (x/net fills
// ipi_spec_dst): Linux takes it, and macOS, which has no IP_SENDSRCADDR.
func marshalSrc4(a [4]byte) []byte {
	return (&ipv4.ControlMessage{Src: net.IP(a[:])}).Marshal()
}
