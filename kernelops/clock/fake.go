package clock

import (
	"sync"
	"time"

	"github.com/keyplane/keyplane/internal/indexheap"
)

// Fake is a test double: a clock that moves only when Advance is called.
// Timers due by the new time fire in time order, synchronously, from
// Advance, so a test observes their effects as soon as Advance returns.
// Timers are kept in a heap, so tests with many thousands of them (an SA
// lifetime each) stay cheap.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers indexheap.Heap[fakeTimer, *fakeTimer] // timers not fired or stopped
}

// NewFake returns a fake clock reading t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

type fakeTimer struct {
	c    *Fake
	when time.Time
	seq  uint64
	f    func()
	done bool
	i    int32 // index in c.timers
}

// The heap orders timers by when, then by the order they were set.
func (t *fakeTimer) HeapLess(u *fakeTimer) bool {
	if !t.when.Equal(u.when) {
		return t.when.Before(u.when)
	}
	return t.seq < u.seq
}

func (t *fakeTimer) HeapIndex() *int32 { return &t.i }

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
	c.timers.Push(t)
	return t
}

// Stop takes the timer out of the heap.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.timers.Remove(t)
	return true
}

// Advance moves the clock forward by d, firing every timer due on the way
// at its own time (a timer set by a firing callback fires too if due).
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		next := c.timers.Top()
		if next == nil || next.when.After(end) {
			c.now = end
			c.mu.Unlock()
			return
		}
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.timers.Pop()
		next.done = true
		c.mu.Unlock()
		next.f()
	}
}

// Next reports when the earliest pending timer is due (false: none is).
func (c *Fake) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.timers.Top(); t != nil {
		return t.when, true
	}
	return time.Time{}, false
}

// Pending reports how many timers wait to fire.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timers.Len()
}
