package ike

import (
	"time"

	"github.com/keyplane/keyplane/internal/indexheap"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// The engine's timers (retransmission, rekey, liveness, half-open
// expiry, ...) are kept in one heap by deadline, on one clock timer
// armed for the earliest: a clock (runtime) timer and its callback per
// engine timer cost ≈170 bytes, and an established IKE SA with its child
// keeps about three. Loop-owned, as the timers' functions run on the loop.

// timer is a loop-side timer: its function runs on the loop, and Stop
// (on the loop) also cancels a firing that was already due.
type timer struct {
	e       *Engine
	at      stamp  // the deadline (8 octets: a timer fits the 48-octet size class, not 64)
	n       uint64 // arming order: of two due at once, the first armed runs first
	f       func()
	i       int32 // index in e.timers.h; -1 when not there
	stopped bool
}

func (t *timer) Stop() {
	if t == nil {
		return
	}
	t.stopped = true
	if t.i >= 0 {
		t.e.timers.h.Remove(t)
	}
}

// timers is the engine's heap of pending timers and the one clock timer.
type timers struct {
	h      indexheap.Heap[timer, *timer]
	n      uint64
	clk    clock.Timer
	clkAt  stamp
	seq    uint64 // tells a stale clock callback from the current one
	firing bool   // arming waits until the due timers have run
}

// after runs f on the loop once d has passed, unless stopped first.
func (e *Engine) after(d time.Duration, f func()) *timer {
	e.timers.n++
	t := &timer{e: e, at: e.stampOf(e.clk.Now().Add(d)), n: e.timers.n, f: f}
	e.timers.h.Push(t)
	if t.i == 0 && !e.timers.firing {
		e.armTimers()
	}
	return t
}

// armTimers arms the clock timer for the earliest deadline.
func (e *Engine) armTimers() {
	ts := &e.timers
	top := ts.h.Top()
	if top == nil || (ts.clk != nil && ts.clkAt == top.at) {
		return
	}
	if ts.clk != nil {
		ts.clk.Stop()
	}
	ts.seq++
	seq := ts.seq
	ts.clkAt = top.at
	ts.clk = e.clk.AfterFunc(max(e.timeOf(ts.clkAt).Sub(e.clk.Now()), 0), func() {
		e.post(func() { e.fireTimers(seq) })
	})
}

// fireTimers runs every timer that is due, earliest first, then arms the
// clock timer for the next.
func (e *Engine) fireTimers(seq uint64) {
	ts := &e.timers
	if ts.seq != seq {
		return // re-armed since
	}
	ts.clk, ts.clkAt = nil, 0
	ts.firing = true
	for {
		now := e.nowStamp()
		for ts.h.Len() > 0 && ts.h.Top().at <= now {
			t := ts.h.Pop()
			if !t.stopped {
				t.stopped = true
				t.f()
			}
		}
		if ts.h.Len() == 0 {
			break
		}
		e.armTimers()
		// A clock moved past the next deadline while it was armed (a fake
		// clock advanced by another goroutine) would fire it only on its
		// next move: run it now instead.
		if e.nowStamp() < ts.h.Top().at {
			break
		}
		ts.clk.Stop()
		ts.clk, ts.clkAt = nil, 0
	}
	ts.firing = false
}

// The heap orders timers by deadline, then arming order.
func (t *timer) HeapLess(u *timer) bool {
	if t.at != u.at {
		return t.at < u.at
	}
	return t.n < u.n
}

func (t *timer) HeapIndex() *int32 { return &t.i }
