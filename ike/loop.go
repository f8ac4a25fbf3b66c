package ike

import (
	"context"
	"sync/atomic"
)

// post queues f to run on the loop. It never blocks, so timer callbacks
// of a fake clock (run synchronously from Advance) and socket readers can
// post at any time.
func (e *Engine) post(f func()) {
	e.qmu.Lock()
	if e.stopped {
		e.qmu.Unlock()
		return
	}
	e.queue = append(e.queue, f)
	e.qmu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
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
			e.drain()
			return
		}
		e.drain()
	}
}

func (e *Engine) drain() {
	for {
		e.qmu.Lock()
		q := e.queue
		e.queue = nil
		e.qmu.Unlock()
		if len(q) == 0 {
			return
		}
		for i, f := range q {
			q[i] = nil
			f()
			e.serveWork()
			if e.chg.verify != nil { // tests (changes_test.go)
				e.chg.verify()
			}
		}
	}
}
