package ike

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// ingress bounds what the socket readers hand the loop: a datagram larger
// than max_packet is dropped unread (as charon does), and while the
// datagrams queued for the loop hold ingressBudget bytes (each counted
// with ingressOverhead for its closure and slice) more are dropped, as
// the kernel drops them from a full socket buffer. Without it a reader
// copies every datagram it can read onto the loop's queue, however far
// behind the loop is. Requests for new IKE SAs may hold at most
// ingressInitBudget of it, so that a burst of them (large ones: 4,096
// at max_packet would be 42 MB) never leaves no room for the exchanges
// under way. Drops are logged once, then counted and told once per
// prelogWindow. Shared by the reader goroutines and the loop: atomics
// only.
type ingress struct {
	maxPacket   atomic.Int64 // 0 until the first configuration: no limit
	queued      atomic.Int64 // bytes queued for the loop
	queuedInits atomic.Int64 // ... of them, new IKE SA requests
	// Drops not told yet, and whether a report is due.
	tooBig, full atomic.Int64
	due          atomic.Bool
	// Since start, for Admission.
	tooBigAll, fullAll atomic.Int64
}

const (
	ingressBudget     = 4 << 20
	ingressInitBudget = ingressBudget * 3 / 4
	ingressOverhead   = 256
)

// admitDatagram is called by a reader for each datagram of n bytes (init:
// a new IKE SA request, newSARequest); false: drop it. Its release must
// follow once the loop has handled it.
func (e *Engine) admitDatagram(n int, init bool, from netip.AddrPort) bool {
	in := &e.adm.in
	if m := in.maxPacket.Load(); m > 0 && int64(n) > m {
		in.tooBig.Add(1)
		in.tooBigAll.Add(1)
		e.ingressDropped(true, n, from)
		return false
	}
	cost := int64(n + ingressOverhead)
	if init && in.queuedInits.Add(cost) > ingressInitBudget {
		in.queuedInits.Add(-cost)
		e.ingressFull(n, from)
		return false
	}
	if in.queued.Add(cost) > ingressBudget {
		in.queued.Add(-cost)
		if init {
			in.queuedInits.Add(-cost)
		}
		e.ingressFull(n, from)
		return false
	}
	return true
}

func (e *Engine) ingressFull(n int, from netip.AddrPort) {
	in := &e.adm.in
	in.full.Add(1)
	in.fullAll.Add(1)
	e.ingressDropped(false, n, from)
}

func (e *Engine) releaseDatagram(n int, init bool) {
	cost := int64(n + ingressOverhead)
	e.adm.in.queued.Add(-cost)
	if init {
		e.adm.in.queuedInits.Add(-cost)
	}
}

// ingressDropped logs the first drop of a window at once (it is not
// counted again in the report) and asks the loop for the report at the
// window's end.
func (e *Engine) ingressDropped(tooBig bool, n int, from netip.AddrPort) {
	in := &e.adm.in
	if !in.due.CompareAndSwap(false, true) {
		return
	}
	msg := "dropped an IKE datagram: the engine is behind (its queue of received datagrams is full)"
	if tooBig {
		in.tooBig.Add(-1)
		msg = "dropped an IKE datagram larger than max_packet"
	} else {
		in.full.Add(-1)
	}
	e.log.Warn(msg, "bytes", n, "max_packet", in.maxPacket.Load(), "from", from)
	e.post(func() { e.after(prelogWindow, e.reportIngress) })
}

func (e *Engine) reportIngress() {
	in := &e.adm.in
	in.due.Store(false)
	if n := in.tooBig.Swap(0); n > 0 {
		e.log.Warn(fmt.Sprintf("dropped %d more IKE datagrams larger than max_packet in the last %s", n, prelogWindow), "count", n)
	}
	if n := in.full.Swap(0); n > 0 {
		e.log.Warn(fmt.Sprintf("dropped %d more IKE datagrams in the last %s: the engine was behind", n, prelogWindow), "count", n)
	}
}
