//go:build freebsd || netbsd || darwin

package pfkey

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// enableDstInfo asks for the destination address of each datagram:
// IP_RECVDSTADDR, IPV6_RECVPKTINFO.
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
	case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= 16:
		return netip.AddrFrom16([16]byte(data[:16])), true
	}
	return netip.Addr{}, false
}

// ipSendSrcAddr is IP_SENDSRCADDR, which FreeBSD and NetBSD define as
// IP_RECVDSTADDR (netinet/in.h).
const ipSendSrcAddr = unix.IP_RECVDSTADDR

// srcInfo picks the source address of an outgoing datagram.
func srcInfo(a netip.Addr, v6 bool) []byte {
	if v6 {
		return cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6Pktinfo(a))
	}
	v := a.As4()
	return cmsg(unix.IPPROTO_IP, ipSendSrcAddr, v[:])
}
