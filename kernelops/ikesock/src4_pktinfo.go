//go:build linux || darwin

package ikesock

import "golang.org/x/sys/unix"

// appendSrc4 sets the IPv4 source with IP_PKTINFO: struct in_pktinfo
// (ifindex, spec_dst, addr) with ipi_spec_dst the source. Linux takes it,
// and macOS, which has no IP_SENDSRCADDR.
func appendSrc4(b []byte, a [4]byte) []byte {
	var pi [unix.SizeofInet4Pktinfo]byte
	copy(pi[4:8], a[:])
	return appendCmsg(b, unix.IPPROTO_IP, unix.IP_PKTINFO, pi[:])
}
