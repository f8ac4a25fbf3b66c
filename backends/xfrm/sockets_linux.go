package xfrm

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

// IKE sockets: UDP sockets with a per-socket XFRM policy of "allow" in
// both directions (IP_XFRM_POLICY / IPV6_XFRM_POLICY), which the kernel
// checks before the SPD, so IKE is never caught by the tunnels it builds.
// The NAT-T socket also has UDP_ENCAP_ESPINUDP: the kernel takes ESP out
// of it and hands up only IKE, which carries a 4-byte non-ESP marker.
// IKEConn strips that marker on read and adds it on write, so the IKE
// engine sees the same bytes on 500 and 4500.

// nonESPMarker prefixes IKE on an ESP-in-UDP socket (RFC 3948).
var nonESPMarker = [4]byte{}

// ListenIKE implements kernelops.Sockets.
func (b *Backend) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	const op = "listen IKE"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	if !l.Addr.IsValid() {
		return nil, kernelops.Invalid(Name, op, "", "Addr", "invalid address")
	}
	addr := netip.AddrPortFrom(l.Addr.Addr().Unmap(), l.Addr.Port())
	network := "udp4"
	v6 := addr.Addr().Is6()
	if v6 {
		network = "udp6"
		if addr.Addr().IsUnspecified() {
			network = "udp" // dual-stack: IPv4 arrives v4-mapped
		}
	}
	var serr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if err := c.Control(func(fd uintptr) { serr = ikeSockopts(int(fd), v6, l.Encap) }); err != nil {
			return err
		}
		return serr
	}}
	var pc net.PacketConn
	err := b.ns.do(func() error {
		var err error
		pc, err = lc.ListenPacket(ctx, network, addr.String())
		return err
	})
	if err != nil {
		return nil, b.kerr(op, addr.String(), err)
	}
	uc := pc.(*net.UDPConn)
	return &ikeConn{c: uc, encap: l.Encap, v6: v6}, nil
}

// ikeSockopts sets the bypass policy, packet info and encapsulation.
func ikeSockopts(fd int, v6, encap bool) error {
	level, opt := unix.IPPROTO_IP, unix.IP_XFRM_POLICY
	fam := uint16(unix.AF_INET)
	if v6 {
		level, opt, fam = unix.IPPROTO_IPV6, unix.IPV6_XFRM_POLICY, unix.AF_INET6
	}
	for _, dir := range []uint8{xfrmPolicyIn, xfrmPolicyOut} {
		// struct xfrm_userpolicy_info: match all, allow, infinite lifetime.
		p := make([]byte, sizePolicyInfo)
		ne.PutUint16(p[40:], fam)
		putLftCfg(p[56:], kernelops.Lifetimes{})
		p[160] = dir
		p[161] = xfrmPolicyAllow
		if err := unix.SetsockoptString(fd, level, opt, string(p)); err != nil {
			return &net.OpError{Op: "setsockopt", Net: "xfrm-policy", Err: err}
		}
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return err
		}
		// A dual-stack socket reports IPv4 arrivals with IP_PKTINFO.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	} else if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
		return err
	}
	if encap {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP); err != nil {
			return &net.OpError{Op: "setsockopt", Net: "udp-encap", Err: err}
		}
	}
	return nil
}

type ikeConn struct {
	c     *net.UDPConn
	encap bool
	v6    bool

	rmu  sync.Mutex
	rbuf []byte
	oob  []byte

	wmu  sync.Mutex
	wbuf []byte
}

// ReadFrom implements kernelops.IKEConn.
func (c *ikeConn) ReadFrom(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.oob == nil {
		c.oob = make([]byte, 128)
	}
	for {
		buf := b
		if c.encap {
			if len(c.rbuf) < len(b)+len(nonESPMarker) {
				c.rbuf = make([]byte, len(b)+len(nonESPMarker))
			}
			buf = c.rbuf[:len(b)+len(nonESPMarker)]
		}
		n, oobn, _, from, err := c.c.ReadMsgUDPAddrPort(buf, c.oob)
		if err != nil {
			return 0, netip.AddrPort{}, netip.AddrPort{}, err
		}
		local := netip.AddrPortFrom(localAddr(c.oob[:oobn]), c.LocalAddr().Port())
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if c.encap {
			// Only marked IKE reaches us; anything else is not for IKE.
			if n < len(nonESPMarker) || [4]byte(buf[:4]) != nonESPMarker {
				continue
			}
			n = copy(b, buf[4:n])
		}
		return n, local, from, nil
	}
}

// localAddr reads the destination address of a datagram from its
// IP_PKTINFO or IPV6_PKTINFO control message.
func localAddr(oob []byte) netip.Addr {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
			return netip.AddrFrom4([4]byte(m.Data[8:12]))
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			return netip.AddrFrom16([16]byte(m.Data[0:16])).Unmap()
		}
	}
	return netip.Addr{}
}

// WriteTo implements kernelops.IKEConn. A valid, specified local address
// is used as the source (IP_PKTINFO/IPV6_PKTINFO).
func (c *ikeConn) WriteTo(b []byte, local, remote netip.AddrPort) (int, error) {
	var oob []byte
	if la := local.Addr(); la.IsValid() && !la.IsUnspecified() {
		oob = pktinfo(la.Unmap(), c.v6)
	}
	dst := remote
	if c.v6 && remote.Addr().Is4() {
		dst = netip.AddrPortFrom(netip.AddrFrom16(remote.Addr().As16()), remote.Port())
	}
	if !c.encap {
		n, _, err := c.c.WriteMsgUDPAddrPort(b, oob, dst)
		return n, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(append(c.wbuf[:0], nonESPMarker[:]...), b...)
	n, _, err := c.c.WriteMsgUDPAddrPort(c.wbuf, oob, dst)
	return max(n-len(nonESPMarker), 0), err
}

func pktinfo(src netip.Addr, v6sock bool) []byte {
	if src.Is4() {
		var pi unix.Inet4Pktinfo
		pi.Spec_dst = src.As4()
		return unix.PktInfo4(&pi)
	}
	var pi unix.Inet6Pktinfo
	pi.Addr = src.As16()
	return unix.PktInfo6(&pi)
}

// LocalAddr implements kernelops.IKEConn.
func (c *ikeConn) LocalAddr() netip.AddrPort {
	ap := c.c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Close implements kernelops.IKEConn.
func (c *ikeConn) Close() error { return c.c.Close() }
