package ike

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
)

// natSide is a test double of a NAT in front of one engine, over
// loopback: a wrapper of the engine's nokernel backend whose IKE sockets
// send through an "outside" UDP socket each (the NAT's mapping: the peer
// sees the engine at the outside socket's port, and answers there) and
// receive what arrives there as coming from the peer. The engine
// addresses its peer's real sockets, so only its own side is NATed: it
// finds itself behind a NAT, the peer finds it is not. It can
//   - rebind: replace the outside sockets, so the peer sees the engine
//     from new ports and what it sends to the old ones is lost (a NAT
//     mapping dropped and made anew, as conntrack -F does),
//   - black-hole everything both ways (a dead peer, a dead path),
//   - make the peer's datagrams look as if they came from another port
//     (to show the NATed engine does not follow),
//   - count the NAT keepalives (one 0xff octet) the engine sends.
type natSide struct {
	*nokernel.Backend
	mu         sync.Mutex
	conns      []*natConn
	hole       bool
	fakeFrom   uint16 // nonzero: the peer's datagrams arrive "from" this port
	keepalives int
	sentTo     []netip.AddrPort // where keepalives went
}

func newNATSide() (*natSide, peerOpt) {
	n := &natSide{}
	return n, withBackend(func(b *nokernel.Backend) kernelops.Backend {
		n.Backend = b
		return n
	})
}

type natDgram struct {
	b    []byte
	from netip.AddrPort
}

// natConn is one IKE socket behind the NAT.
type natConn struct {
	n      *natSide
	inner  kernelops.IKEConn
	encap  bool
	out    *net.UDPConn // guarded by n.mu
	in     chan natDgram
	done   chan struct{}
	closed sync.Once
}

func (n *natSide) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	inner, err := n.Backend.ListenIKE(ctx, l)
	if err != nil {
		return nil, err
	}
	c := &natConn{n: n, inner: inner, encap: l.Encap, in: make(chan natDgram, 64), done: make(chan struct{})}
	out, err := listenLoopback()
	if err != nil {
		inner.Close()
		return nil, err
	}
	n.mu.Lock()
	c.out = out
	n.conns = append(n.conns, c)
	n.mu.Unlock()
	go c.readOutside(out)
	go c.readInner()
	return c, nil
}

func listenLoopback() (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
}

// rebind gives every socket a new outside socket; the old mappings are
// gone.
func (n *natSide) rebind() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		out, err := listenLoopback()
		if err != nil {
			return err
		}
		c.out.Close()
		c.out = out
		go c.readOutside(out)
	}
	return nil
}

// outsidePort is the NAT-T socket's outside port: where the peer sees
// the engine's NAT-T traffic come from.
func (n *natSide) outsidePort() uint16 {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		if c.encap {
			return c.out.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		}
	}
	return 0
}

func (n *natSide) blackhole(on bool) {
	n.mu.Lock()
	n.hole = on
	n.mu.Unlock()
}

func (n *natSide) keepalivesSent() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.keepalives
}

func (c *natConn) WriteTo(p []byte, local, remote netip.AddrPort) (int, error) {
	n := c.n
	n.mu.Lock()
	hole, out := n.hole, c.out
	if len(p) == 1 && p[0] == 0xff {
		n.keepalives++
		n.sentTo = append(n.sentTo, remote)
	}
	n.mu.Unlock()
	if hole {
		return len(p), nil
	}
	b := p
	if c.encap && !(len(p) == 1 && p[0] == 0xff) {
		b = append([]byte{0, 0, 0, 0}, p...)
	}
	if _, err := out.WriteToUDPAddrPort(b, remote); err != nil && !errors.Is(err, net.ErrClosed) {
		return 0, err
	}
	return len(p), nil
}

func (c *natConn) readOutside(out *net.UDPConn) {
	buf := make([]byte, 65536)
	for {
		k, from, err := out.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := buf[:k]
		if c.encap {
			if len(b) < 4 || b[0]|b[1]|b[2]|b[3] != 0 {
				continue // ESP or a keepalive: not IKE
			}
			b = b[4:]
		}
		c.n.mu.Lock()
		hole, fake := c.n.hole, c.n.fakeFrom
		c.n.mu.Unlock()
		if hole {
			continue
		}
		if fake != 0 {
			from = netip.AddrPortFrom(from.Addr(), fake)
		}
		select {
		case c.in <- natDgram{append([]byte(nil), b...), from}:
		case <-c.done:
			return
		}
	}
}

func (c *natConn) readInner() {
	buf := make([]byte, 65536)
	for {
		k, _, from, err := c.inner.ReadFrom(buf)
		if err != nil {
			return
		}
		select {
		case c.in <- natDgram{append([]byte(nil), buf[:k]...), from}:
		case <-c.done:
			return
		}
	}
}

func (c *natConn) ReadFrom(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	select {
	case d := <-c.in:
		return copy(b, d.b), c.inner.LocalAddr(), d.from, nil
	case <-c.done:
		return 0, netip.AddrPort{}, netip.AddrPort{}, net.ErrClosed
	}
}

func (c *natConn) LocalAddr() netip.AddrPort { return c.inner.LocalAddr() }

func (c *natConn) Close() error {
	c.closed.Do(func() {
		close(c.done)
		c.n.mu.Lock()
		c.out.Close()
		c.n.mu.Unlock()
	})
	return c.inner.Close()
}
