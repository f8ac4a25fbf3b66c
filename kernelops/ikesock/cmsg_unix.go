//go:build linux || freebsd || netbsd || openbsd || darwin

package ikesock

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Control messages are read and written by hand, without unsafe casts of
// the byte slices: unix.ParseSocketControlMessage allocates a slice per
// call, and the kernel's (or a fuzzer's) bytes need not be aligned.

// The layout of struct cmsghdr: its length field is a size_t on Linux and
// a socklen_t on the BSDs; level and type are ints after it.
const (
	cmsgLevelOff = int(unsafe.Offsetof(unix.Cmsghdr{}.Level))
	cmsgTypeOff  = int(unsafe.Offsetof(unix.Cmsghdr{}.Type))
)

// nextCmsg splits the first control message off b. ok is false when b
// holds no (further) well-formed message.
func nextCmsg(b []byte) (level, typ int, data, rest []byte, ok bool) {
	hdr := unix.CmsgLen(0) // the header, aligned: where the data starts
	if len(b) < hdr {
		return 0, 0, nil, nil, false
	}
	var l uint64
	if cmsgLevelOff == 8 {
		l = binary.NativeEndian.Uint64(b)
	} else {
		l = uint64(binary.NativeEndian.Uint32(b))
	}
	if l < uint64(hdr) || l > uint64(len(b)) {
		return 0, 0, nil, nil, false
	}
	level = int(int32(binary.NativeEndian.Uint32(b[cmsgLevelOff:])))
	typ = int(int32(binary.NativeEndian.Uint32(b[cmsgTypeOff:])))
	data = b[hdr:l]
	if next := unix.CmsgSpace(int(l) - hdr); next < len(b) {
		rest = b[next:]
	}
	return level, typ, data, rest, true
}

// IPv6 packet info is the same everywhere (RFC 3542: IPV6_RECVPKTINFO
// asks for it, struct in6_pktinfo is the address, then the ifindex);
// IPv4 differs per OS (enableDst4, dst4FromCmsg, appendSrc4).

// enableDstInfo asks for each datagram's destination address.
func enableDstInfo(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return enableDst4(fd)
}

func dstFromCmsg(level, typ int, data []byte) (netip.Addr, bool) {
	if level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo {
		return netip.AddrFrom16([16]byte(data[:16])), true
	}
	return dst4FromCmsg(level, typ, data)
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

// dstAddr finds the datagram's destination address in the control
// messages of a read.
func dstAddr(oob []byte) (netip.Addr, bool) {
	for {
		level, typ, data, rest, ok := nextCmsg(oob)
		if !ok {
			return netip.Addr{}, false
		}
		if a, ok := dstFromCmsg(level, typ, data); ok {
			return a, true
		}
		oob = rest
	}
}

// appendCmsg appends one control message with data to b.
func appendCmsg(b []byte, level, typ int, data []byte) []byte {
	hdr := unix.CmsgLen(0)
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(len(data)))...)
	m := b[start:]
	l := unix.CmsgLen(len(data))
	if cmsgLevelOff == 8 {
		binary.NativeEndian.PutUint64(m, uint64(l))
	} else {
		binary.NativeEndian.PutUint32(m, uint32(l))
	}
	binary.NativeEndian.PutUint32(m[cmsgLevelOff:], uint32(int32(level)))
	binary.NativeEndian.PutUint32(m[cmsgTypeOff:], uint32(int32(typ)))
	copy(m[hdr:], data)
	return b
}
