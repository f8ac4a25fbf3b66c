package ikesock

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// Linux reports the IPv4 destination in IP_PKTINFO: struct in_pktinfo,
// ifindex, spec_dst, addr (the header's destination).

func enableDst4(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
}

func dst4FromCmsg(level, typ int, data []byte) (netip.Addr, bool) {
	if level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo {
		return netip.AddrFrom4([4]byte(data[8:12])), true // ipi_addr
	}
	return netip.Addr{}, false
}
