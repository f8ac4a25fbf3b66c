package ike

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// sock is one IKE socket: the plain one (port 500 or local_port) or the
// NAT-T one (4500 or local_port_nat).
type sock struct {
	conn  kernelops.IKEConn
	bound netip.AddrPort
	// nat is the NAT-T socket; its dataplane adds and strips the
	// non-ESP marker (kernelops.IKEListen.Encap), so the engine sends and
	// receives the same bytes on both sockets.
	nat bool
	// rcvbuf is the receive buffer last asked for (0: the OS default).
	rcvbuf int
	// behind counts the datagrams read and dropped because the loop's
	// queue was full.
	behind atomic.Uint64
	// repeats counts the new IKE SA requests read and dropped because a
	// copy was still queued (intake.go).
	repeats atomic.Uint64
}

func listenAddr(a netip.Addr, other netip.Addr, port uint16) netip.AddrPort {
	if !a.IsValid() {
		if other.IsValid() && other.Is6() {
			a = netip.IPv6Unspecified()
		} else {
			a = netip.IPv4Unspecified()
		}
	}
	return netip.AddrPortFrom(a, port)
}

// openSockets opens the sockets cfg needs and closes those it no longer
// does. Runs on the loop.
func (e *Engine) openSockets(ctx context.Context, cfg *config.Config) error {
	want := map[netip.AddrPort]bool{} // listen address -> is the NAT-T socket
	type pair struct{ plain, nat netip.AddrPort }
	var pairs []pair
	for _, c := range cfg.Connections {
		p := pair{listenAddr(c.LocalAddr, c.RemoteAddr, c.LocalPort), listenAddr(c.LocalAddr, c.RemoteAddr, c.LocalNATPort)}
		if isNat, ok := want[p.plain]; ok && isNat {
			return fmt.Errorf("ike: connection %s: local_port %s is another connection's NAT-T port", c.Name, p.plain)
		}
		if isNat, ok := want[p.nat]; ok && !isNat {
			return fmt.Errorf("ike: connection %s: local_port_nat %s is another connection's plain port", c.Name, p.nat)
		}
		_, a := want[p.plain]
		_, b := want[p.nat]
		want[p.plain], want[p.nat] = false, true
		if !a || !b {
			pairs = append(pairs, p)
		}
	}
	var opened []*sock
	fail := func(err error) error {
		for _, s := range opened {
			delete(e.sockets, s.bound)
			s.conn.Close()
		}
		e.publishSockets()
		return err
	}
	for _, p := range pairs {
		for _, x := range []struct {
			addr netip.AddrPort
			nat  bool
		}{{p.plain, false}, {p.nat, true}} {
			if e.sockets[x.addr] != nil {
				continue
			}
			c, err := e.socks.ListenIKE(ctx, kernelops.IKEListen{Addr: x.addr, Encap: x.nat, RecvBuffer: cfg.Daemon.IKESocketBuffer})
			if err != nil {
				return fail(fmt.Errorf("ike: open IKE socket %s: %w", x.addr, err))
			}
			s := &sock{conn: c, bound: x.addr, nat: x.nat, rcvbuf: cfg.Daemon.IKESocketBuffer}
			e.sockets[x.addr] = s
			opened = append(opened, s)
			e.wg.Add(1)
			go e.read(s)
			e.log.Info("listening", "addr", x.addr, "nat-t", x.nat)
		}
	}
	for a, s := range e.sockets {
		if _, ok := want[a]; !ok {
			delete(e.sockets, a)
			s.conn.Close()
			e.log.Info("closed IKE socket", "addr", a)
		}
	}
	e.resizeSockets(cfg.Daemon.IKESocketBuffer)
	e.publishSockets()
	return nil
}

// publishSockets lets SocketStats see the sockets. Runs on the loop.
func (e *Engine) publishSockets() {
	l := make([]*sock, 0, len(e.sockets))
	for _, s := range e.sockets {
		l = append(l, s)
	}
	e.sockList.Store(&l)
}

// read is a socket's reader goroutine.
func (e *Engine) read(s *sock) {
	defer e.wg.Done()
	buf := make([]byte, 65536)
	for {
		t0 := time.Now()
		n, local, remote, err := s.conn.ReadFrom(buf)
		// A datagram that was there at once (no wait worth the name)
		// says the socket has a backlog: the jobs this one makes go to
		// the workers, and this goroutine gets back to reading.
		behind := time.Since(t0) < readBehindWait
		if err != nil {
			if e.ctx.Err() != nil || errors.Is(err, kernelops.ErrClosed) || isClosedErr(err) {
				return
			}
			e.log.Warn("IKE socket read failed", "addr", s.bound, "err", err)
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		init := newSARequest(buf[:n])
		if init && e.queuedAgain(buf[:n], remote) {
			s.repeats.Add(1)
			continue
		}
		if !e.admitDatagram(n, init, remote) {
			continue
		}
		if !e.admit(init) {
			e.releaseDatagram(n, init)
			s.behind.Add(1)
			continue
		}
		if !local.Addr().IsValid() || local.Addr().IsUnspecified() {
			local = netip.AddrPortFrom(s.bound.Addr(), s.bound.Port())
		}
		if e.enqueue(dgram{s: s, data: append([]byte(nil), buf[:n]...), local: local, remote: remote, init: init}, !behind) && !behind {
			e.help(false)
		}
	}
}

// readBehindWait: a read that returns sooner than this found its
// datagram waiting. A read that waits is woken by the poller, which takes
// a context switch or more (tens of µs); one that does not is a system
// call of a few µs.
const readBehindWait = 20 * time.Microsecond

func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

// sendTo writes an IKE message from s.
func (e *Engine) sendTo(s *sock, local, remote netip.AddrPort, msg []byte) {
	if s == nil {
		return
	}
	if local.Addr().IsValid() && local.Port() != s.bound.Port() {
		local = netip.AddrPortFrom(local.Addr(), s.bound.Port())
	}
	if _, err := s.conn.WriteTo(msg, local, remote); err != nil {
		e.log.Warn("IKE send failed", "from", local, "to", remote, "err", err)
	}
}

// natSock returns the NAT-T socket that pairs with s.
func (e *Engine) natSock(s *sock, c *config.Connection) *sock {
	if s.nat {
		return s
	}
	return e.sockets[netip.AddrPortFrom(s.bound.Addr(), c.LocalNATPort)]
}
