//go:build linux || freebsd || netbsd || openbsd || darwin

package ikesock

import (
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Packet info travels in golang.org/x/net's control messages: ipv4 and
// ipv6 ControlMessage.Parse read a datagram's destination address (Linux
// IP_PKTINFO, the BSDs' and macOS' IP_RECVDSTADDR, RFC 3542's
// IPV6_PKTINFO everywhere), and Marshal writes the source address of a
// reply (IP_PKTINFO, IPV6_PKTINFO). Two things remain by hand:
//
//   - Asking for packet info (enableDstInfo): x/net's SetControlMessage
//     needs a PacketConn, that is a socket already bound, and a datagram
//     that arrives before the option is set carries no packet info. The
//     option is set in Listen's Control, before bind, instead.
//   - The IPv4 source on FreeBSD, NetBSD and OpenBSD (src4_sendsrcaddr.go):
//     they have no IP_PKTINFO, and x/net's ipv4 Marshal writes nothing else.
//
// The socket's reads and writes stay on net.UDPConn's ReadMsgUDPAddrPort
// and WriteMsgUDPAddrPort, which allocate nothing; x/net's PacketConn
// allocates a ControlMessage and a net.Addr per read.

// enableDstInfo asks for each datagram's destination address.
func enableDstInfo(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, ipRecvDst4, 1)
}

// dstReader decodes the destination address from a read's control
// messages. One per socket, owned by its reader: the messages' address
// buffers are reused from read to read, so decoding one allocates only
// x/net's list of messages.
type dstReader struct {
	cm4  ipv4.ControlMessage
	cm6  ipv6.ControlMessage
	buf4 [4]byte
	buf6 [16]byte
}

// dst finds the destination address in oob, the control messages of a
// read on an IPv6 (v6) or IPv4 socket. ok is false when oob holds none:
// malformed messages, or no packet info among them.
func (r *dstReader) dst(oob []byte, v6 bool) (netip.Addr, bool) {
	var ip []byte
	if v6 {
		r.buf6 = [16]byte{}
		r.cm6 = ipv6.ControlMessage{Dst: r.buf6[:]}
		if r.cm6.Parse(oob) != nil {
			return netip.Addr{}, false
		}
		ip = r.cm6.Dst
	} else {
		r.buf4 = [4]byte{}
		r.cm4 = ipv4.ControlMessage{Dst: r.buf4[:]}
		if r.cm4.Parse(oob) != nil {
			return netip.Addr{}, false
		}
		ip = r.cm4.Dst
	}
	// Dst stays all zeros when no packet info came: no datagram is
	// addressed to 0.0.0.0 or ::.
	a, ok := netip.AddrFromSlice(ip)
	if !ok || a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a, true
}

// marshalSrc returns the control message that makes src the source
// address of a datagram.
func marshalSrc(src netip.Addr) []byte {
	if src.Is6() {
		return (&ipv6.ControlMessage{Src: src.AsSlice()}).Marshal()
	}
	return marshalSrc4(src.As4())
}
