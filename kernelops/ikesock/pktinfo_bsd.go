//go:build freebsd || netbsd || openbsd || darwin

package ikesock

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// The BSDs and macOS report an IPv4 destination in IP_RECVDSTADDR, a bare
// struct in_addr. The IPv4 source is set per OS:
// src4_sendsrcaddr.go, src4_pktinfo.go (macOS).

func enableDst4(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVDSTADDR, 1)
}

func dst4FromCmsg(level, typ int, data []byte) (netip.Addr, bool) {
	if level == unix.IPPROTO_IP && typ == unix.IP_RECVDSTADDR && len(data) >= 4 {
		return netip.AddrFrom4([4]byte(data[:4])), true
	}
	return netip.Addr{}, false
}
