//go:build freebsd || netbsd || openbsd || darwin

package ikesock

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// The BSDs and macOS report an IPv4 destination in IP_RECVDSTADDR (a bare
// struct in_addr) and an IPv6 one in IPV6_PKTINFO (struct in6_pktinfo,
// the same as Linux's); the IPv4 source is set per OS (appendSrc4).

// enableDstInfo asks for each datagram's destination address.
func enableDstInfo(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVDSTADDR, 1)
}

func dstFromCmsg(level, typ int, data []byte) (netip.Addr, bool) {
	switch {
	case level == unix.IPPROTO_IP && typ == unix.IP_RECVDSTADDR && len(data) >= 4:
		return netip.AddrFrom4([4]byte(data[:4])), true
	case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
		return netip.AddrFrom16([16]byte(data[:16])), true
	}
	return netip.Addr{}, false
}

// appendSrcInfo appends the control message that makes src the source
// address of a datagram.
func appendSrcInfo(b []byte, src netip.Addr) []byte {
	if src.Is6() {
		var pi [unix.SizeofInet6Pktinfo]byte // ifindex 0: the route decides
		a := src.As16()
		copy(pi[:], a[:])
		return appendCmsg(b, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pi[:])
	}
	return appendSrc4(b, src.As4())
}
