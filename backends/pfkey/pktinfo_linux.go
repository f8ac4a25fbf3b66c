package pfkey

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// enableDstInfo asks for the destination address of each datagram:
// IP_PKTINFO, IPV6_RECVPKTINFO.
func enableDstInfo(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
}

func dstFromCmsg(level, typ int, data []byte) (netip.Addr, bool) {
	switch {
	case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= 12:
		return netip.AddrFrom4([4]byte(data[8:12])), true // struct in_pktinfo: ifindex, spec_dst, addr
	case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= 16:
		return netip.AddrFrom16([16]byte(data[:16])), true
	}
	return netip.Addr{}, false
}

// srcInfo picks the source address of an outgoing datagram.
func srcInfo(a netip.Addr, v6 bool) []byte {
	if v6 {
		return cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6Pktinfo(a))
	}
	v := a.As4()
	pi := make([]byte, 12) // ipi_ifindex 0, ipi_spec_dst = a, ipi_addr unused
	copy(pi[4:8], v[:])
	return cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pi)
}
