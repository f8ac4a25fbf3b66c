package ike

import (
	"math"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// The message window of one IKE SA (RFC 7296 §2.1, §2.3), with window
// size 1 in both directions: our requests — message IDs, the one request
// in flight, the ones queued behind it, retransmission with exponential
// backoff and the give-up — and the peer's: the next message ID we
// expect and the cached answer to the last one, sent again unchanged for
// a retransmitted request. It does no I/O and no cryptography itself: the
// IKE SA gives it an encoder and a transmitter, and a scheduler that runs
// timers on the engine's loop (or, in tests, on a fake clock), so it can
// be tested without sockets.

// retransmitPolicy is when requests are retransmitted: the first time
// after Timeout, each next one Base times later, giving up after Tries
// retransmissions (strongSwan's retransmit_timeout, retransmit_base and
// retransmit_tries).
type retransmitPolicy struct {
	Timeout time.Duration
	Base    float64
	Tries   int
}

// wait is how long the request waits for an answer after try
// retransmissions (0: after the first send).
func (p retransmitPolicy) wait(try int) time.Duration {
	return time.Duration(float64(p.Timeout) * math.Pow(p.Base, float64(try)))
}

// giveUpAfter is how long a request stays unanswered before it is given
// up: the sum of every wait.
func (p retransmitPolicy) giveUpAfter() time.Duration {
	var d time.Duration
	for i := 0; i <= p.Tries; i++ {
		d += p.wait(i)
	}
	return d
}

// stopper cancels a scheduled function.
type stopper interface{ Stop() }

// request is one exchange we start: encoded once, retransmitted
// unchanged (RFC 7296 §2.1) until answered or given up.
type request struct {
	exch       message.ExchangeType
	payloads   []message.Payload
	onResponse func(*message.Message)
	onTimeout  func() // nil: the IKE SA is destroyed
	// held is when the request was held back because the SA's link was
	// down (zero: never held); onDrop runs if it is dropped unsent.
	held   time.Time
	onDrop func(why string)
	// built, if set, sees the message as built, before it is encrypted
	// (RFC 9242's IntAuth is computed from it).
	built func(*message.Message)
	// kex is the key exchange whose public value the request carries:
	// the answer's KE is taken with it on a worker (ke_offload.go).
	kex ikecrypto.KeyExchange

	// Set by the window.
	msgID uint32
	data  []byte
	frags [][]byte // the request in RFC 7383 fragments (sent instead of data)
	tries int
	timer stopper
}

func (r *request) stopTimer() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// window is an IKE SA's message window. Every method runs on the owner's
// goroutine (the engine loop).
type window struct {
	// host is the owner: the IKE SA (retransmit.go), or a test's fake.
	// One interface instead of a func field per need keeps an IKE SA's
	// window at 16 octets and no closures of its own.
	host windowHost

	nextID   uint32   // the message ID of our next request
	inflight *request // our request awaiting its answer
	queue    []*request
	paused   bool // no retransmissions (the SA's link is down)

	peerNext uint32 // the message ID of the peer's next request
	lastResp []byte // our answer to the request peerNext-1 (in fragments too: ikeSA.frag)

	// resync: the SA was taken over from another node (hastate.go),
	// whose last answers may not have been synced. Until a request is
	// answered, one from the last synced ID - 1 up to resyncSpan ahead
	// counts as the next: it must still decrypt to be answered.
	resync bool
}

// windowHost is what a window asks of its owner.
type windowHost interface {
	// winPolicy is read at every (re)arm, so a reload applies to the
	// next wait.
	winPolicy() retransmitPolicy
	// winAfter schedules f on the owner's goroutine.
	winAfter(d time.Duration, f func()) stopper
	// encodeRequest returns the request's datagram; r.msgID is set.
	encodeRequest(r *request) ([]byte, error)
	// winXmit sends r.data to the peer (r.tries > 0: a retransmission).
	winXmit(r *request)
	// winGiveUp runs when the request in flight got no answer after
	// every retransmission; it is no longer in flight then.
	winGiveUp(r *request)
	// winChanged runs when nextID or peerNext moved (HA export).
	winChanged()
}

// resyncSpan bounds how far ahead of the synced ID a request may be
// after a takeover.
const resyncSpan = 64

// start sends r now if nothing is in flight, else queues it. An encoding
// failure is returned and r is neither sent nor queued.
func (w *window) start(r *request) error {
	if w.inflight != nil {
		w.queue = append(w.queue, r)
		return nil
	}
	r.msgID = w.nextID
	data, err := w.host.encodeRequest(r)
	if err != nil {
		return err
	}
	r.data, r.tries = data, 0
	w.inflight = r
	w.host.winXmit(r)
	if !w.paused {
		w.arm(r)
	}
	return nil
}

func (w *window) arm(r *request) {
	r.stopTimer()
	r.timer = w.host.winAfter(w.host.winPolicy().wait(r.tries), func() { w.fire(r) })
}

// fire is r's retransmission timer: send it again, or give up.
func (w *window) fire(r *request) {
	r.timer = nil
	if w.inflight != r || w.paused {
		return
	}
	if r.tries >= w.host.winPolicy().Tries {
		w.inflight = nil
		w.host.winGiveUp(r)
		return
	}
	r.tries++
	w.host.winXmit(r)
	w.arm(r)
}

// expects reports whether a response with this message ID and exchange
// answers the request in flight.
func (w *window) expects(msgID uint32, exch message.ExchangeType) bool {
	return w.inflight != nil && w.inflight.msgID == msgID && w.inflight.exch == exch
}

// complete ends the request in flight, answered: the next request gets
// the next message ID. The caller runs its onResponse and then next.
func (w *window) complete() *request {
	r := w.inflight
	if r == nil {
		return nil
	}
	r.stopTimer()
	w.inflight = nil
	w.nextID = r.msgID + 1
	if w.host != nil {
		w.host.winChanged()
	}
	return r
}

// abandon ends the request in flight unanswered, keeping its message ID
// for the next request (an IKE_SA_INIT sent again with a COOKIE or
// another key exchange).
func (w *window) abandon() *request {
	r := w.inflight
	if r != nil {
		r.stopTimer()
		w.inflight = nil
	}
	return r
}

// pop takes the first queued request, if nothing is in flight.
func (w *window) pop() *request {
	if w.inflight != nil || len(w.queue) == 0 {
		return nil
	}
	r := w.queue[0]
	w.queue = w.queue[1:]
	if len(w.queue) == 0 {
		w.queue = nil
	}
	return r
}

// busy reports whether a request is in flight or queued.
func (w *window) busy() bool { return w.inflight != nil || len(w.queue) > 0 }

// pause stops retransmitting; the request in flight stays.
func (w *window) pause() {
	w.paused = true
	if w.inflight != nil {
		w.inflight.stopTimer()
	}
}

// resume lets the window retransmit again: the request in flight is
// sent again at once with all its retransmissions ahead of it. It
// reports whether it sent it.
func (w *window) resume() bool {
	w.paused = false
	r := w.inflight
	if r == nil {
		return false
	}
	r.tries = 0
	w.host.winXmit(r)
	w.arm(r)
	return true
}

// clear drops everything we had to send.
func (w *window) clear() {
	if w.inflight != nil {
		w.inflight.stopTimer()
		w.inflight = nil
	}
	w.queue = nil
}

// reqKind classifies a request from the peer by its message ID.
type reqKind uint8

const (
	reqNew        reqKind = iota // the one we expect: process it
	reqRetransmit                // the last one again: answer it again
	reqOutside                   // anything else: drop it
)

func (w *window) classify(msgID uint32) reqKind {
	switch {
	case msgID == w.peerNext:
		return reqNew
	case w.lastResp != nil && msgID+1 == w.peerNext:
		return reqRetransmit
	case w.resync && msgID+1 >= w.peerNext && msgID+1-w.peerNext <= resyncSpan:
		return reqNew
	}
	return reqOutside
}

// answered records our answer to the peer's request msgID; the next
// request expected is msgID+1.
func (w *window) answered(msgID uint32, data []byte) {
	w.peerNext = msgID + 1
	w.lastResp = data
	w.resync = false
	if w.host != nil {
		w.host.winChanged()
	}
}
