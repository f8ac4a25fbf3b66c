//go:build freebsd || netbsd || openbsd

package ikesock

import "golang.org/x/sys/unix"

// ipSendSrcAddr is IP_SENDSRCADDR, which FreeBSD, NetBSD and OpenBSD
// define as IP_RECVDSTADDR (netinet/in.h); x/sys lacks it on NetBSD.
const ipSendSrcAddr = unix.IP_RECVDSTADDR

// appendSrc4 sets the IPv4 source with IP_SENDSRCADDR (a bare in_addr).
func appendSrc4(b []byte, a [4]byte) []byte {
	return appendCmsg(b, unix.IPPROTO_IP, ipSendSrcAddr, a[:])
}
