package ike

import (
	"context"
	"sync/atomic"
)

// The loop is not one goroutine but one lock: loopMu is held by
// whichever goroutine runs the loop's work, so that work runs one
// function at a time as on a single goroutine. The loop's goroutine
// runs what post queues (timers, control calls, kernel events). A socket
// reader or a crypto worker that queues work runs it itself, with
// runHere, when no one holds the lock: handing each datagram and each
// result to a parked goroutine made the runtime wake an idle thread for
// many of them (a futex wake and a context switch each). On a 2-core
// machine a daemon answering 1,000 handshakes switched context ≈5,000
// times, ≈2,100 with GOMAXPROCS=1, which used 15–19 % less CPU per
// handshake.

// post queues f to run on the loop. It never blocks, so timer callbacks
// of a fake clock (run synchronously from Advance) and socket readers can
// post at any time.
func (e *Engine) post(f func()) {
	if e.push(f) {
		e.wakeLoop()
	}
}

func (e *Engine) wakeLoop() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// push queues f for the loop; false once the loop has stopped.
func (e *Engine) push(f func()) bool {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	if e.stopped {
		return false
	}
	e.queue = append(e.queue, f)
	return true
}

func (e *Engine) queueEmpty() bool {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	return len(e.queue) == 0
}

// runHere queues f and, unless another goroutine holds the loop, runs
// what is queued now on the calling goroutine; it reports whether it did.
// helps says whether the caller then runs the crypto jobs queued
// meanwhile (help): if not, offload wakes a worker for each.
// What those functions queue in turn is left to the loop's goroutine, so
// a reader gets back to its socket. When another goroutine holds the
// loop, that one looks at the queue again after letting go (loop,
// runHere), so f is not left behind. Never call it from the loop's work:
// the lock is not reentrant (it would leave f to the holder, itself).
func (e *Engine) runHere(f func(), helps bool) bool {
	if !e.push(f) {
		return false
	}
	if !e.loopMu.TryLock() {
		return false
	}
	e.helps = helps
	e.runQueued()
	e.loopMu.Unlock()
	if !e.queueEmpty() {
		e.wakeLoop()
	}
	return true
}

// call runs f on the loop and waits for it. When ctx ends or the loop
// stops first, f either never runs or has finished when call returns:
// callers read what f wrote (a timed-out status call raced with its f
// running later on the loop).
func (e *Engine) call(ctx context.Context, f func()) error {
	const pending, ran, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan struct{})
	e.post(func() {
		if state.CompareAndSwap(pending, ran) {
			f()
		}
		close(done)
	})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if state.CompareAndSwap(pending, abandoned) {
			return ctx.Err()
		}
		<-done // f is running on the loop: let it finish
		return nil
	case <-e.loopDone:
		if state.CompareAndSwap(pending, abandoned) {
			return ErrClosed
		}
		<-done
		return nil
	}
}

func (e *Engine) loop() {
	defer close(e.loopDone)
	for {
		select {
		case <-e.wake:
		case <-e.stop:
			e.loopMu.Lock()
			e.helps = false
			e.drain()
			e.loopMu.Unlock()
			return
		}
		// Another goroutine may have queued while this one held the
		// lock and left it to this one: look again after letting go.
		for !e.queueEmpty() {
			e.loopMu.Lock()
			// This goroutine does not compute: it would keep timers
			// and control calls waiting behind a job.
			e.helps = false
			e.drain()
			e.loopMu.Unlock()
		}
	}
}

// drain runs the queue until it is empty. The caller holds loopMu.
func (e *Engine) drain() {
	for e.runQueued() {
	}
}

// runQueued runs what is queued now, and reports whether there was
// anything. The caller holds loopMu.
func (e *Engine) runQueued() bool {
	e.qmu.Lock()
	q := e.queue
	e.queue, e.spare = e.spare, nil
	e.qmu.Unlock()
	for i, f := range q {
		q[i] = nil
		f()
		e.serveWork()
		if e.chg.verify != nil { // tests (changes_test.go)
			e.chg.verify()
		}
	}
	// The drained slice backs the next queue but one: a new slice per
	// turn was an allocation or more per datagram. One that grew in a
	// burst is let go.
	if cap(q) <= maxSpareQueue {
		e.qmu.Lock()
		e.spare = q[:0]
		e.qmu.Unlock()
	}
	return len(q) > 0
}

// maxSpareQueue is the longest drained queue runQueued keeps for reuse.
const maxSpareQueue = 256
