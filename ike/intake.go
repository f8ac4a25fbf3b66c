package ike

import (
	"net/netip"
	"sync"
)

// The datagrams read and queued for the loop wait in two lanes, each
// bounded (and both within ingress's bytes): requests for new IKE SAs
// (IKE_SA_INIT requests, first sends and retransmissions alike) and the
// rest, the exchanges under way. The loop takes the rest first, so an
// IKE_AUTH never waits behind a backlog of IKE_SA_INITs (such a backlog
// held IKE_AUTHs past the half-open timeout); and the INIT lane is large
// enough to hold a burst of initiators started together instead of
// keeping a fixed share of it. Initiators started together retransmit
// together, so a responder that keeps only a share of each round
// brings up only that share per round: with 768 kept, 10,000
// initiators ran out of retransmissions. Past the bounds the readers
// drop what they read (Behind), as the kernel would; a copy of a request
// still queued they drop at once (Repeated).
const (
	// maxQueuedDatagrams bounds the exchanges under way.
	maxQueuedDatagrams = 1024
	// maxQueuedInits bounds the new IKE SA requests: at the responder's
	// ≈0.3 ms per IKE_SA_INIT, about a second of the loop's work, well
	// within an initiator's first retransmission timeout (4 s).
	maxQueuedInits = 4096
)

// dgram is a datagram read and queued for the loop.
type dgram struct {
	s             *sock
	data          []byte
	local, remote netip.AddrPort
	init          bool // a new IKE SA request (newSARequest)
}

// lanes are the queued datagrams (FIFO each). Shared by the readers and
// the loop under mu.
type lanes struct {
	mu          sync.Mutex
	work, inits []dgram
	// initsFrom holds the (SPIi, source) of each queued new IKE SA
	// request: a retransmission of one still queued is dropped at once
	// (its first copy will be answered), so a round of retransmissions
	// takes no room from initiators not yet queued.
	initsFrom map[queuedInit]struct{}
}

type queuedInit struct {
	spii   [8]byte
	remote netip.AddrPort
}

// newSARequest tells an IKE_SA_INIT request (responder SPI zero, R flag
// clear) from the rest without decoding it.
func newSARequest(b []byte) bool {
	if len(b) < 28 || b[19]&0x20 != 0 {
		return false
	}
	for _, x := range b[8:16] {
		if x != 0 {
			return false
		}
	}
	return true
}

// admit takes a place in a lane for a datagram, or says to drop it.
func (e *Engine) admit(init bool) bool {
	n, limit := &e.queued, int64(maxQueuedDatagrams)
	if init {
		n, limit = &e.queuedInits, maxQueuedInits
	}
	if n.Add(1) > limit {
		n.Add(-1)
		return false
	}
	return true
}

// queuedAgain reports whether a new IKE SA request from remote with the
// same SPIi as b is queued.
func (e *Engine) queuedAgain(b []byte, remote netip.AddrPort) bool {
	l := &e.lanes
	l.mu.Lock()
	_, ok := l.initsFrom[queuedInit{[8]byte(b[:8]), remote}]
	l.mu.Unlock()
	return ok
}

// enqueue puts an admitted datagram in its lane and asks the loop for
// one datagram: nextDatagram takes whichever is due when it runs. It
// reports whether the calling goroutine ran the loop's work (runHere);
// helps as runHere's.
func (e *Engine) enqueue(d dgram, helps bool) bool {
	l := &e.lanes
	l.mu.Lock()
	if d.init {
		l.inits = append(l.inits, d)
		if l.initsFrom == nil {
			l.initsFrom = map[queuedInit]struct{}{}
		}
		l.initsFrom[queuedInit{[8]byte(d.data[:8]), d.remote}] = struct{}{}
	} else {
		l.work = append(l.work, d)
	}
	l.mu.Unlock()
	return e.runHere(e.nextDatagram, helps)
}

// nextDatagram handles the first datagram of the exchanges under way, or
// if there is none the first new IKE SA request. Runs on the loop, once
// per datagram enqueued (one served early by serveWork leaves its call
// with nothing to do).
func (e *Engine) nextDatagram() { e.serveOne(false) }

// serveWork handles the datagrams of exchanges under way queued so far,
// ahead of whatever else waits for the loop (at most maxQueuedDatagrams:
// the rest waits no longer than that). The loop calls it between the
// functions posted to it: an initiator with thousands of initiations
// posted at once answers the responses of those it started instead of
// letting them pile up past the bound and be dropped (each drop costs
// the exchange a 4 s retransmission). Runs on the loop.
func (e *Engine) serveWork() {
	for e.queued.Load() > 0 && e.serveOne(true) {
	}
}

// serveOne handles one queued datagram, from the exchanges under way
// first; workOnly: none but those. It reports whether there was one.
func (e *Engine) serveOne(workOnly bool) bool {
	l := &e.lanes
	l.mu.Lock()
	var d dgram
	switch {
	case len(l.work) > 0:
		d, l.work[0] = l.work[0], dgram{}
		l.work = l.work[1:]
	case len(l.inits) > 0 && !workOnly:
		d, l.inits[0] = l.inits[0], dgram{}
		l.inits = l.inits[1:]
		delete(l.initsFrom, queuedInit{[8]byte(d.data[:8]), d.remote})
	default:
		l.mu.Unlock()
		return false
	}
	l.mu.Unlock()
	if d.init {
		e.queuedInits.Add(-1)
	} else {
		e.queued.Add(-1)
	}
	e.releaseDatagram(len(d.data), d.init)
	e.handleDatagram(d.s, d.data, d.local, d.remote)
	return true
}
