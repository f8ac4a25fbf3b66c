//go:build freebsd || netbsd || openbsd

package ikesock

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FreeBSD, NetBSD and OpenBSD set an IPv4 datagram's source with
// IP_SENDSRCADDR, a bare struct in_addr. They have no IP_PKTINFO, and
// x/net's ipv4.ControlMessage.Marshal writes nothing but IP_PKTINFO, so
// this one message is built by hand.

// ipSendSrcAddr is IP_SENDSRCADDR, which these systems define as
// IP_RECVDSTADDR (netinet/in.h); x/sys lacks it on NetBSD.
const ipSendSrcAddr = unix.IP_RECVDSTADDR

// marshalSrc4 builds struct cmsghdr (a socklen_t length, then level and
// type as ints), padded, followed by the address.
func marshalSrc4(a [4]byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(a)))
	binary.NativeEndian.PutUint32(b, uint32(unix.CmsgLen(len(a))))
	binary.NativeEndian.PutUint32(b[unsafe.Offsetof(unix.Cmsghdr{}.Level):], uint32(unix.IPPROTO_IP))
	binary.NativeEndian.PutUint32(b[unsafe.Offsetof(unix.Cmsghdr{}.Type):], uint32(ipSendSrcAddr))
	copy(b[unix.CmsgLen(0):], a[:])
	return b
}
