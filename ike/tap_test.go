package ike

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// tapBackend is a test double over the nokernel model: it records every
// IKE datagram the engine writes to its sockets (the measure of what an
// engine puts on the wire) and can hide capabilities from the engine.
type tapBackend struct {
	*nokernel.Backend
	hide kernelops.Cap
	clk  clock.Clock

	mu   sync.Mutex
	sent []sentMsg
	// drop, if set, decides whether a datagram is lost instead of sent
	// (it is recorded either way, with dropped set).
	drop func(sentMsg) bool
	// keep, if set, sees each datagram's bytes (under mu).
	keep func(sentMsg, []byte)
	// routes counts the engine's RouteTo queries.
	routes atomic.Int64
}

// sentMsg is one datagram as the tap saw it: the IKE header's fields.
type sentMsg struct {
	at            time.Time
	local, remote netip.AddrPort
	spii          uint64
	exch          message.ExchangeType
	response      bool
	msgID         uint32
	size          int  // octets of the datagram's IKE message
	fragment      bool // its first payload is an Encrypted Fragment (SKF)
	fragNum       uint16
	fragTotal     uint16
	dropped       bool // drop made it lost
	keepalive     bool // a NAT keepalive (one 0xff octet)
}

func tap(clk clock.Clock, hide kernelops.Cap) (*tapBackend, peerOpt) {
	tb := &tapBackend{hide: hide, clk: clk}
	if tb.clk == nil {
		tb.clk = clock.Real()
	}
	return tb, withBackend(func(b *nokernel.Backend) kernelops.Backend {
		tb.Backend = b
		return tb
	})
}

func (b *tapBackend) Capabilities() kernelops.Capabilities {
	c := b.Backend.Capabilities()
	c.Caps &^= b.hide
	return c
}

// RouteTo counts the query (routes) and asks the model.
func (b *tapBackend) RouteTo(ctx context.Context, dst netip.Addr) (kernelops.Route, error) {
	b.routes.Add(1)
	return b.Backend.RouteTo(ctx, dst)
}

func (b *tapBackend) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	c, err := b.Backend.ListenIKE(ctx, l)
	if err != nil {
		return nil, err
	}
	return &tapConn{IKEConn: c, b: b}, nil
}

type tapConn struct {
	kernelops.IKEConn
	b *tapBackend
}

func (c *tapConn) WriteTo(p []byte, local, remote netip.AddrPort) (int, error) {
	m := sentMsg{at: c.b.clk.Now(), local: local, remote: remote, size: len(p), keepalive: len(p) == 1 && p[0] == 0xff}
	if len(p) >= 28 {
		m.fragment = message.PayloadType(p[16]) == message.PayloadSKF
		if m.fragment && len(p) >= 36 {
			m.fragNum, m.fragTotal = binary.BigEndian.Uint16(p[32:34]), binary.BigEndian.Uint16(p[34:36])
		}
		m.spii = binary.BigEndian.Uint64(p[0:8])
		m.exch = message.ExchangeType(p[18])
		m.response = p[19]&0x20 != 0
		m.msgID = binary.BigEndian.Uint32(p[20:24])
	}
	c.b.mu.Lock()
	m.dropped = c.b.drop != nil && c.b.drop(m)
	if c.b.keep != nil {
		c.b.keep(m, p)
	}
	c.b.sent = append(c.b.sent, m)
	c.b.mu.Unlock()
	if m.dropped {
		return len(p), nil
	}
	return c.IKEConn.WriteTo(p, local, remote)
}

// mark returns a position in the record; since(mark) what came after.
func (b *tapBackend) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sent)
}

func (b *tapBackend) since(mark int) []sentMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]sentMsg(nil), b.sent[mark:]...)
}

// requests counts the requests of exchange x sent after mark that match
// f (nil: all), retransmissions included.
func (b *tapBackend) requests(mark int, x message.ExchangeType, f func(sentMsg) bool) int {
	n := 0
	for _, m := range b.since(mark) {
		if !m.response && !m.keepalive && m.exch == x && (f == nil || f(m)) {
			n++
		}
	}
	return n
}

// firstSends are the requests after mark without their retransmissions
// (a retransmission repeats the SA's SPI and message ID).
func firstSends(ms []sentMsg) []sentMsg {
	type key struct {
		spii  uint64
		msgID uint32
	}
	seen := map[key]bool{}
	var out []sentMsg
	for _, m := range ms {
		k := key{m.spii, m.msgID}
		if m.response || m.keepalive || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, m)
	}
	return out
}

// distinctRequests counts the requests of exchange x sent after mark,
// retransmissions not counted: on a loaded machine a fake clock can pass
// the retransmission time before the peer's answer is read, and a
// retransmission is the same request.
func distinctRequests(b *tapBackend, mark int, x message.ExchangeType) int {
	n := 0
	for _, m := range firstSends(b.since(mark)) {
		if m.exch == x {
			n++
		}
	}
	return n
}

// keepalives counts the NAT keepalives sent after mark.
func (b *tapBackend) keepalives(mark int) int {
	n := 0
	for _, m := range b.since(mark) {
		if m.keepalive {
			n++
		}
	}
	return n
}
