package nokernel

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/keyplane/keyplane/kernelops"
)

// ListenIKE opens a real UDP socket (Sockets). The model applies IPsec to
// no real traffic, so the socket needs no bypass policy. When bound to a
// wildcard address it reports, where the OS tells (Linux IP_PKTINFO), the
// local address each datagram arrived on and sends from the local
// address given to WriteTo.
//
// On the NAT-T socket (Encap) the model does what the kernel's
// UDP_ENCAP_ESPINUDP does with arriving datagrams: ESP (a non-zero first
// word) and NAT keepalives (a single 0xff) are consumed — the model has
// no ESP to decrypt them into — and IKE datagrams are delivered with
// their four-byte non-ESP marker, which the reader strips (and the writer
// prepends), exactly as on XFRM.
func (b *Backend) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	const op = "listen IKE"
	if !l.Addr.Addr().IsValid() {
		return nil, kernelops.Invalid(Name, op, l.Addr.String(), "Addr", "missing address (use 0.0.0.0 or :: for all)")
	}
	if err := b.checkOpen(ctx, op); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", l.Addr.String())
	if err != nil {
		return nil, sockErr(op, l.Addr.String(), err)
	}
	uc := pc.(*net.UDPConn)
	c := &ikeConn{b: b, uc: uc, encap: l.Encap, local: netip.MustParseAddrPort(uc.LocalAddr().String())}
	c.local = netip.AddrPortFrom(c.local.Addr().Unmap(), c.local.Port())
	c.wildcard = c.local.Addr().IsUnspecified()
	if c.wildcard {
		if err := enablePktinfo(uc, c.local.Addr().Is6()); err != nil {
			uc.Close()
			return nil, sockErr(op, l.Addr.String(), err)
		}
	}
	b.sockMu.Lock()
	b.sockets[c] = struct{}{}
	b.sockMu.Unlock()
	return c, nil
}

func sockErr(op, obj string, err error) error {
	ke := &kernelops.Error{Backend: Name, Op: op, Object: obj, Err: err}
	if errors.Is(err, net.ErrClosed) {
		ke.Err = kernelops.ErrClosed
		ke.Detail = err.Error()
	}
	return ke
}

func (b *Backend) closeSockets() {
	b.sockMu.Lock()
	socks := make([]*ikeConn, 0, len(b.sockets))
	for c := range b.sockets {
		socks = append(socks, c)
	}
	b.sockMu.Unlock()
	for _, c := range socks {
		c.Close()
	}
}

type ikeConn struct {
	b        *Backend
	uc       *net.UDPConn
	encap    bool
	local    netip.AddrPort
	wildcard bool

	closeOnce sync.Once
}

func (c *ikeConn) LocalAddr() netip.AddrPort { return c.local }

func (c *ikeConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.b.sockMu.Lock()
		delete(c.b.sockets, c)
		c.b.sockMu.Unlock()
		err = c.uc.Close()
	})
	return err
}

// ReadFrom returns the next IKE datagram with the local address it
// arrived on and the peer's address.
func (c *ikeConn) ReadFrom(p []byte) (n int, local, remote netip.AddrPort, err error) {
	oob := make([]byte, oobSize)
	for {
		var oobn int
		n, oobn, _, remote, err = c.uc.ReadMsgUDPAddrPort(p, oob)
		if err != nil {
			return 0, netip.AddrPort{}, netip.AddrPort{}, sockErr("read IKE", c.local.String(), err)
		}
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
		local = c.local
		if c.wildcard {
			if a, ok := pktinfoDst(oob[:oobn]); ok {
				local = netip.AddrPortFrom(a.Unmap(), c.local.Port())
			}
		}
		if c.encap {
			if !isIKEOnEncap(p[:n]) {
				continue // ESP or a keepalive: the dataplane's, not IKE's
			}
			// The kernelops contract: the reader gets the IKE message
			// without the non-ESP marker.
			n = copy(p, p[4:n])
		}
		return n, local, remote, nil
	}
}

// isIKEOnEncap tells IKE (non-ESP marker: a zero first word) from ESP and
// keepalives on a NAT-T socket, as the kernel's udp_encap_rcv does.
func isIKEOnEncap(b []byte) bool {
	return len(b) >= 4 && binary.BigEndian.Uint32(b) == 0
}

// WriteTo sends p to remote from local (zero: the socket's own address).
func (c *ikeConn) WriteTo(p []byte, local, remote netip.AddrPort) (int, error) {
	if !remote.IsValid() {
		return 0, kernelops.Invalid(Name, "write IKE", c.local.String(), "remote", "missing destination")
	}
	dst := remote
	if c.local.Addr().Is6() && remote.Addr().Is4() {
		dst = netip.AddrPortFrom(netip.AddrFrom16(remote.Addr().As16()), remote.Port())
	}
	var oob []byte
	if c.wildcard && local.Addr().IsValid() && !local.Addr().IsUnspecified() {
		oob = pktinfoSrc(local.Addr(), c.local.Addr().Is6())
	}
	msg := p
	if c.encap {
		msg = make([]byte, 4+len(p)) // the non-ESP marker, then the IKE message
		copy(msg[4:], p)
	}
	_, _, err := c.uc.WriteMsgUDPAddrPort(msg, oob, dst)
	if err != nil {
		return 0, sockErr("write IKE", remote.String(), err)
	}
	return len(p), nil
}
