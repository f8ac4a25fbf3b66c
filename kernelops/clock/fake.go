package clock

import (
	"container/heap"
	"sync"
	"time"
)

// Fake is a test double: a clock that moves only when Advance is called.
// Timers due by the new time fire in time order, synchronously, from
// Advance, so a test observes their effects as soon as Advance returns.
// Timers are kept in a heap, so tests with many thousands of them (an SA
// lifetime each) stay cheap.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	seq     uint64
	timers  timerHeap // pending timers, and stopped ones not yet popped
	pending int       // timers not fired or stopped
}

// NewFake returns a fake clock reading t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

type fakeTimer struct {
	c    *Fake
	when time.Time
	seq  uint64
	f    func()
	done bool
}

// timerHeap orders timers by when, then by the order they were set.
type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(*fakeTimer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	heap.Push(&c.timers, t)
	c.pending++
	return t
}

// Stop marks the timer done; the heap drops it when it comes up.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.pending--
	return true
}

// top returns the earliest pending timer, dropping stopped ones. The
// caller holds c.mu.
func (c *Fake) top() *fakeTimer {
	for len(c.timers) > 0 {
		if t := c.timers[0]; !t.done {
			return t
		}
		heap.Pop(&c.timers)
	}
	return nil
}

// Advance moves the clock forward by d, firing every timer due on the way
// at its own time (a timer set by a firing callback fires too if due).
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		next := c.top()
		if next == nil || next.when.After(end) {
			c.now = end
			c.mu.Unlock()
			return
		}
		if next.when.After(c.now) {
			c.now = next.when
		}
		heap.Pop(&c.timers)
		next.done = true
		c.pending--
		c.mu.Unlock()
		next.f()
	}
}

// Next reports when the earliest pending timer is due (false: none is).
func (c *Fake) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.top(); t != nil {
		return t.when, true
	}
	return time.Time{}, false
}

// Pending reports how many timers wait to fire.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending
}
