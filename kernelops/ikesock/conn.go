package ikesock

import (
	"net"
	"net/netip"
	"sync"

	"github.com/keyplane/keyplane/kernelops"
)

// markerLen is the length of the non-ESP marker, four zero bytes, that
// precedes IKE on the NAT-T port (RFC 3948, section 2.2).
const markerLen = 4

// oobCap holds the one packet-info control message a read carries, with
// room to spare.
const oobCap = 128

type conn struct {
	backend  string
	uc       *net.UDPConn
	local    netip.AddrPort // bound address, unmapped
	obj      string         // local.String(), for errors
	v6       bool           // the socket's family
	wildcard bool           // bound to 0.0.0.0 or ::: packet info in and out
	encap    bool           // the NAT-T socket: non-ESP marker framing
	group    *Group

	rmu  sync.Mutex // one reader at a time owns roob and dst
	roob [oobCap]byte
	dst  dstReader

	wmu  sync.Mutex // one writer at a time owns wbuf, wsrc and woob
	wbuf []byte
	// The control message for the last source address written from: a
	// socket mostly answers from one address, so the message is built
	// (and allocated) only when the source changes.
	wsrc netip.Addr
	woob []byte

	closeOnce sync.Once
	closeErr  error
}

func (c *conn) LocalAddr() netip.AddrPort { return c.local }

func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		if c.group != nil {
			c.group.remove(c)
		}
		if err := c.uc.Close(); err != nil {
			c.closeErr = wrap(c.backend, "close IKE", c.obj, err)
		}
	})
	return c.closeErr
}

// ReadFrom reads the next IKE datagram into p, with the local address it
// arrived on (the bound one unless the socket is a wildcard) and the
// peer's address. On the NAT-T socket what is not IKE is dropped and the
// marker is stripped; the datagram is read into p itself, so there a
// message longer than len(p)-4 is truncated.
func (c *conn) ReadFrom(p []byte) (n int, local, remote netip.AddrPort, err error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		n, oobn, _, from, err := c.uc.ReadMsgUDPAddrPort(p, c.roob[:])
		if err != nil {
			return 0, netip.AddrPort{}, netip.AddrPort{}, wrap(c.backend, "read IKE", c.obj, err)
		}
		if c.encap {
			if !hasMarker(p[:n]) {
				continue // ESP or a NAT keepalive: the dataplane's, not IKE's
			}
			n = copy(p, p[markerLen:n])
		}
		local = c.local
		if c.wildcard {
			if a, ok := c.dst.dst(c.roob[:oobn], c.v6); ok {
				local = netip.AddrPortFrom(a.Unmap(), c.local.Port())
			}
		}
		return n, local, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
	}
}

// isKeepalive reports whether p is a NAT-keepalive, one 0xff octet (RFC
// 3948 §2.3): it goes out on the NAT-T port as it is, without the marker.
func isKeepalive(p []byte) bool { return len(p) == 1 && p[0] == 0xff }

// hasMarker tells IKE (a zero first word) from ESP (a non-zero SPI) and
// NAT keepalives (one 0xff byte) on the NAT-T port.
func hasMarker(b []byte) bool {
	return len(b) >= markerLen && b[0]|b[1]|b[2]|b[3] == 0
}

// WriteTo sends p to remote. On a wildcard socket a specified local
// address picks the source; on a bound socket the bound address is the
// source whatever local says.
func (c *conn) WriteTo(p []byte, local, remote netip.AddrPort) (int, error) {
	const op = "write IKE"
	dst := netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	switch {
	case !remote.IsValid():
		return 0, kernelops.Invalid(c.backend, op, c.obj, "remote", "missing destination")
	case dst.Addr().Is6() != c.v6:
		return 0, kernelops.Invalid(c.backend, op, c.obj, "remote", "%s: not the socket's address family", remote)
	}
	src := local.Addr().Unmap()
	withSrc := c.wildcard && src.IsValid() && !src.IsUnspecified()
	if withSrc && src.Is6() != c.v6 {
		return 0, kernelops.Invalid(c.backend, op, c.obj, "local", "%s: not the socket's address family", local)
	}
	if !withSrc && !c.encap {
		_, _, err := c.uc.WriteMsgUDPAddrPort(p, nil, dst)
		if err != nil {
			return 0, wrap(c.backend, op, dst.String(), err)
		}
		return len(p), nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	msg := p
	if c.encap && !isKeepalive(p) {
		c.wbuf = append(append(c.wbuf[:0], 0, 0, 0, 0), p...)
		msg = c.wbuf
	}
	var oob []byte
	if withSrc {
		if src != c.wsrc {
			c.wsrc, c.woob = src, marshalSrc(src)
		}
		oob = c.woob
	}
	if _, _, err := c.uc.WriteMsgUDPAddrPort(msg, oob, dst); err != nil {
		return 0, wrap(c.backend, op, dst.String(), err)
	}
	return len(p), nil
}
