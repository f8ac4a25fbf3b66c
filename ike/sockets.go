package ike

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
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
	nat   bool
	// rawMarker: this NAT-T socket hands IKE over with its four-byte
	// non-ESP marker and sends what it is given, so the engine strips and
	// adds the marker. Dataplanes differ here (the nokernel model keeps
	// the marker, the kernel backends strip it), so the engine measures
	// it when it opens the socket (probeMarker).
	rawMarker atomic.Bool
}

var nonESPMarker = []byte{0, 0, 0, 0}

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
// does. Runs on the loop; the marker probe runs on the reader goroutines.
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
		return err
	}
	for _, p := range pairs {
		var plain, nat *sock
		for _, x := range []struct {
			addr netip.AddrPort
			nat  bool
		}{{p.plain, false}, {p.nat, true}} {
			if s := e.sockets[x.addr]; s != nil {
				if x.nat {
					nat = s
				} else {
					plain = s
				}
				continue
			}
			c, err := e.socks.ListenIKE(ctx, kernelops.IKEListen{Addr: x.addr, Encap: x.nat})
			if err != nil {
				return fail(fmt.Errorf("ike: open IKE socket %s: %w", x.addr, err))
			}
			s := &sock{conn: c, bound: x.addr, nat: x.nat}
			e.sockets[x.addr] = s
			opened = append(opened, s)
			e.wg.Add(1)
			go e.read(s)
			if x.nat {
				nat = s
			} else {
				plain = s
			}
			e.log.Info("listening", "addr", x.addr, "nat-t", x.nat)
		}
		if nat != nil && plain != nil && slicesContains(opened, nat) {
			nat.rawMarker.Store(e.probeMarker(plain, nat))
		}
	}
	for a, s := range e.sockets {
		if _, ok := want[a]; !ok {
			delete(e.sockets, a)
			s.conn.Close()
			e.log.Info("closed IKE socket", "addr", a)
		}
	}
	return nil
}

func slicesContains(ss []*sock, s *sock) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// probeMarker finds out whether the NAT-T socket leaves the non-ESP
// marker to the engine: it sends a token from the NAT-T socket to the
// plain one, which shows the marker if the socket added it. Without an
// answer within a second it assumes the socket handles the marker (what
// kernelops.IKEListen.Encap promises for the kernel backends).
func (e *Engine) probeMarker(plain, nat *sock) bool {
	tok := make([]byte, 16)
	rand.Read(tok)
	tok[0] = 0xff // never a non-ESP marker itself
	ch := make(chan bool, 1)
	e.probeMu.Lock()
	e.probes[string(tok)] = ch
	e.probeMu.Unlock()
	defer func() {
		e.probeMu.Lock()
		delete(e.probes, string(tok))
		e.probeMu.Unlock()
	}()
	dst := plain.bound
	if dst.Addr().IsUnspecified() {
		lo := netip.MustParseAddr("127.0.0.1")
		if dst.Addr().Is6() {
			lo = netip.IPv6Loopback()
		}
		dst = netip.AddrPortFrom(lo, dst.Port())
	}
	if _, err := nat.conn.WriteTo(tok, netip.AddrPort{}, dst); err != nil {
		e.log.Warn("non-ESP marker probe not sent; assuming the socket handles the marker", "err", err)
		return false
	}
	select {
	case raw := <-ch:
		e.log.Debug("non-ESP marker probe", "socket", nat.bound, "engine-adds-marker", raw)
		return raw
	case <-time.After(time.Second):
		e.log.Warn("non-ESP marker probe unanswered; assuming the socket handles the marker", "socket", nat.bound)
		return false
	}
}

// checkProbe consumes a marker probe token arriving on a plain socket.
func (e *Engine) checkProbe(b []byte) bool {
	if len(b) != 16 && len(b) != 20 {
		return false
	}
	e.probeMu.Lock()
	defer e.probeMu.Unlock()
	if ch, ok := e.probes[string(b)]; ok {
		ch <- true // arrived as sent: the socket added no marker
		return true
	}
	if len(b) == 20 && bytes.Equal(b[:4], nonESPMarker) {
		if ch, ok := e.probes[string(b[4:])]; ok {
			ch <- false
			return true
		}
	}
	return false
}

// read is a socket's reader goroutine.
func (e *Engine) read(s *sock) {
	defer e.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, local, remote, err := s.conn.ReadFrom(buf)
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
		b := buf[:n]
		if !s.nat && e.checkProbe(b) {
			continue
		}
		if s.nat {
			b = stripMarker(b, s.rawMarker.Load())
			if b == nil {
				continue
			}
		}
		data := append([]byte(nil), b...)
		if !local.Addr().IsValid() || local.Addr().IsUnspecified() {
			local = netip.AddrPortFrom(s.bound.Addr(), s.bound.Port())
		}
		e.post(func() { e.handleDatagram(s, data, local, remote) })
	}
}

func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

// stripMarker removes the non-ESP marker of a datagram from a NAT-T
// socket. With raw set the socket delivers it; otherwise the datagram is
// stripped only when it evidently carries one: a zero first word with an
// IKE header whose Length fits the rest (an unmarked message whose
// initiator SPI starts with a zero word would have its own Length there).
func stripMarker(b []byte, raw bool) []byte {
	if raw {
		if len(b) < 4 || !bytes.Equal(b[:4], nonESPMarker) {
			return nil
		}
		return b[4:]
	}
	if len(b) >= 4+28 && bytes.Equal(b[:4], nonESPMarker) &&
		int(binary.BigEndian.Uint32(b[4+24:])) == len(b)-4 && int(binary.BigEndian.Uint32(b[24:])) != len(b) {
		return b[4:]
	}
	return b
}

// sendTo writes an IKE message from s, adding the marker where the socket
// leaves it to us.
func (e *Engine) sendTo(s *sock, local, remote netip.AddrPort, msg []byte) {
	if s == nil {
		return
	}
	b := msg
	if s.nat && s.rawMarker.Load() {
		b = append(append(make([]byte, 0, len(msg)+4), nonESPMarker...), msg...)
	}
	if local.Addr().IsValid() && local.Port() != s.bound.Port() {
		local = netip.AddrPortFrom(local.Addr(), s.bound.Port())
	}
	if _, err := s.conn.WriteTo(b, local, remote); err != nil {
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
