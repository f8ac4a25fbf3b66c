package ikesock

import "golang.org/x/sys/unix"

// appendSrc4 sets the IPv4 source on macOS, which has no IP_SENDSRCADDR:
// IP_PKTINFO with struct in_pktinfo (ifindex, spec_dst, addr), as on
// Linux.
func appendSrc4(b []byte, a [4]byte) []byte {
	var pi [unix.SizeofInet4Pktinfo]byte
	copy(pi[4:8], a[:]) // ipi_spec_dst
	return appendCmsg(b, unix.IPPROTO_IP, unix.IP_PKTINFO, pi[:])
}
