package ikesock

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// Linux reports and takes addresses in IP_PKTINFO (struct in_pktinfo:
// ifindex, spec_dst, addr) and IPV6_PKTINFO (struct in6_pktinfo: addr,
// ifindex).

// enableDstInfo asks for each datagram's destination address.
func enableDstInfo(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
}

func dstFromCmsg(level, typ int, data []byte) (netip.Addr, bool) {
	switch {
	case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
		return netip.AddrFrom4([4]byte(data[8:12])), true // ipi_addr: the header's destination
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
	var pi [unix.SizeofInet4Pktinfo]byte
	a := src.As4()
	copy(pi[4:8], a[:]) // ipi_spec_dst: the source to use
	return appendCmsg(b, unix.IPPROTO_IP, unix.IP_PKTINFO, pi[:])
}
