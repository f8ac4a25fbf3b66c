//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

// IKE sockets: UDP sockets carrying a per-socket policy of type
// IPSEC_POLICY_BYPASS for each direction (IP_IPSEC_POLICY and
// IPV6_IPSEC_POLICY take a bare sadb_x_policy), which the kernel checks
// before the SPD, so IKE never enters the tunnels it negotiates. On Linux
// the option is decoded by af_key's pfkey_compile_policy. The NAT-T
// socket also has UDP_ENCAP_ESPINUDP: the kernel takes ESP out of it and
// leaves IKE, which carries a 4-byte non-ESP marker (RFC 3948) that
// ReadFrom strips and WriteTo adds.
//
// IPv4 addresses open udp4 sockets and IPv6 ones udp6 (IPV6_V6ONLY): a
// daemon listening on both families opens both.

const udpEncapESPInUDP = 2 // UDP_ENCAP_ESPINUDP, the same on Linux, FreeBSD and NetBSD

// ListenIKE implements kernelops.Sockets.
func (b *Backend) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	const op = "listen IKE"
	if err := b.require(op, kernelops.CapSockets); err != nil {
		return nil, err
	}
	if !l.Addr.IsValid() {
		return nil, kernelops.Invalid(Name, op, "", "Addr", "invalid address")
	}
	addr := netip.AddrPortFrom(l.Addr.Addr().Unmap(), l.Addr.Port())
	obj := addr.String()
	if l.Encap && b.os.udpEncapOpt == 0 {
		return nil, unsupported(op, obj, "Encap", "%s", b.os.notes[kernelops.CapUDPEncap])
	}
	v6 := addr.Addr().Is6()
	network := "udp4"
	if v6 {
		network = "udp6"
	}
	var serr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if err := c.Control(func(fd uintptr) { serr = b.ikeSockopts(int(fd), v6, l.Encap) }); err != nil {
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
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return nil, kernelops.FromErrno(Name, op, obj, errno, err.Error())
		}
		return nil, &kernelops.Error{Backend: Name, Op: op, Object: obj, Err: err}
	}
	c := &ikeConn{b: b, c: pc.(*net.UDPConn), encap: l.Encap, v6: v6}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		pc.Close()
		return nil, &kernelops.Error{Backend: Name, Op: op, Object: obj, Err: kernelops.ErrClosed}
	}
	b.socks[c] = struct{}{}
	b.mu.Unlock()
	return c, nil
}

// ikeSockopts sets the bypass policies, NAT-T decapsulation and the
// destination-address ancillary data on fd.
func (b *Backend) ikeSockopts(fd int, v6, encap bool) error {
	level, opt := unix.IPPROTO_IP, b.os.ipsecPolicy4
	if v6 {
		level, opt = unix.IPPROTO_IPV6, b.os.ipsecPolicy6
	}
	for _, dir := range []uint8{sadb.DirInbound, sadb.DirOutbound} {
		blob, err := b.x.d.AppendExt(nil, &sadb.Policy{PolicyType: sadb.PolicyBypass, Dir: dir})
		if err != nil {
			return err
		}
		if err := unix.SetsockoptString(fd, level, opt, string(blob)); err != nil {
			return err
		}
	}
	if encap {
		if err := unix.SetsockoptInt(fd, b.os.udpEncapLevel, b.os.udpEncapOpt, udpEncapESPInUDP); err != nil {
			return err
		}
	}
	return enableDstInfo(fd, v6)
}

type ikeConn struct {
	b     *Backend
	c     *net.UDPConn
	encap bool
	v6    bool

	mu  sync.Mutex // one reader's buffers at a time
	oob []byte
	buf []byte
}

var nonESPMarker = []byte{0, 0, 0, 0}

func (c *ikeConn) LocalAddr() netip.AddrPort { return c.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (c *ikeConn) Close() error {
	c.b.mu.Lock()
	if c.b.socks != nil {
		delete(c.b.socks, c)
	}
	c.b.mu.Unlock()
	return c.c.Close()
}

// ReadFrom implements kernelops.IKEConn. On the NAT-T socket it skips
// what is not IKE (NAT keepalives) and strips the non-ESP marker.
func (c *ikeConn) ReadFrom(p []byte) (n int, local, remote netip.AddrPort, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.oob == nil {
		c.oob = make([]byte, 256)
		c.buf = make([]byte, 65536)
	}
	port := c.LocalAddr().Port()
	for {
		nn, oobn, _, from, err := c.c.ReadMsgUDPAddrPort(c.buf, c.oob)
		if err != nil {
			return 0, netip.AddrPort{}, netip.AddrPort{}, err
		}
		data := c.buf[:nn]
		if c.encap {
			if len(data) < 4 || [4]byte(data[:4]) != [4]byte{} {
				continue // a keepalive (one 0xff byte) or junk
			}
			data = data[4:]
		}
		if dst, ok := parseDstInfo(c.oob[:oobn]); ok {
			local = netip.AddrPortFrom(dst, port)
		}
		return copy(p, data), local, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
	}
}

// WriteTo implements kernelops.IKEConn: local, when set, picks the
// source address.
func (c *ikeConn) WriteTo(p []byte, local, remote netip.AddrPort) (int, error) {
	var oob []byte
	if a := local.Addr(); a.IsValid() && !a.IsUnspecified() {
		oob = srcInfo(a.Unmap(), c.v6)
	}
	data := p
	if c.encap {
		data = append(append(make([]byte, 0, len(p)+4), nonESPMarker...), p...)
	}
	if !c.v6 {
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	}
	n, _, err := c.c.WriteMsgUDPAddrPort(data, oob, remote)
	if c.encap && n >= 4 {
		n -= 4
	}
	return n, err
}

// cmsg builds one control message.
func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = int32(level)
	h.Type = int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// in6Pktinfo is struct in6_pktinfo: the same on every OS here.
func in6Pktinfo(a netip.Addr) []byte {
	v := a.As16()
	return append(v[:], 0, 0, 0, 0)
}

// parseDstInfo finds the destination address in received ancillary data.
func parseDstInfo(oob []byte) (netip.Addr, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, m := range msgs {
		if a, ok := dstFromCmsg(int(m.Header.Level), int(m.Header.Type), m.Data); ok {
			return a, true
		}
	}
	return netip.Addr{}, false
}
