// bus fans dataplane events out to subscribers without ever blocking the
// dataplane's reader and without losing events silently: a subscriber
// that falls behind gets an *OverrunEvent in the place of what it missed,
// and a dataplane that lost events itself (a netlink ENOBUFS) announces it
// to every subscriber with Overrun. The front end owns one per Handle.

package kernelops

import (
	"context"
	"sync"
)

// bus is a set of subscriptions. The zero value is not usable; call New.
type bus struct {
	mu     sync.Mutex
	subs   map[*busSub]struct{}
	closed bool
}

// New returns an empty bus.
func newBus() *bus { return &bus{subs: map[*busSub]struct{}{}} }

// Subscribe adds a subscriber; it ends when ctx is done, Close is called on
// it, or the bus closes.
func (b *bus) Subscribe(ctx context.Context, opts SubscribeOptions) (Subscription, error) {
	n := opts.Buffer
	if n <= 0 {
		n = DefaultEventBuffer
	}
	if n < 2 {
		n = 2 // room for an overrun marker and one event
	}
	kinds := opts.Kinds
	if kinds == 0 {
		kinds = AllKinds
	}
	s := &busSub{bus: b, kinds: kinds | KindOverrun, ring: make([]Event, n),
		out: make(chan Event), done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, &Error{Op: "subscribe", Err: ErrClosed}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	// Armed under s.mu: a ctx already done runs Close at once in another
	// goroutine, and Close must see stopCtx set.
	s.mu.Lock()
	s.stopCtx = context.AfterFunc(ctx, func() { s.Close() })
	s.mu.Unlock()
	go s.pump()
	return s, nil
}

// Publish queues ev for every subscriber that wants its kind. It never
// blocks.
func (b *bus) Publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.kinds&ev.Kind() != 0 {
			s.push(ev)
		}
	}
}

// Overrun tells every subscriber that the dataplane itself lost events
// (lost = -1 when it cannot count them).
func (b *bus) Overrun(lost int, source string) {
	b.Publish(&OverrunEvent{Lost: lost, Source: source})
}

// Subscribers reports how many subscriptions are open.
func (b *bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends every subscription; later Subscribe calls fail with ErrClosed.
func (b *bus) Close() {
	b.mu.Lock()
	b.closed = true
	subs := make([]*busSub, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
}

// busSub queues events in a fixed ring; a pump goroutine hands them to the
// unbuffered out channel, so the publisher never waits on a reader.
type busSub struct {
	bus     *bus
	kinds   EventKind
	stopCtx func() bool

	mu     sync.Mutex
	cond   *sync.Cond
	ring   []Event
	head   int // index of the oldest queued event
	n      int // queued events
	lost   int // dropped since the last overrun marker was queued
	closed bool

	out       chan Event
	done      chan struct{}
	closeOnce sync.Once
}

func (s *busSub) Events() <-chan Event { return s.out }

func (s *busSub) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		stop := s.stopCtx
		s.mu.Unlock()
		stop()
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		s.bus.mu.Unlock()
		s.mu.Lock()
		s.closed = true
		s.cond.Broadcast()
		s.mu.Unlock()
		close(s.done)
	})
	return nil
}

func (s *busSub) push(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if o, ok := ev.(*OverrunEvent); ok && s.n == len(s.ring) {
		// No room even for the marker: fold the dataplane's loss into ours.
		s.lost += max(o.Lost, 1)
		return
	}
	// Events were dropped earlier: queue the marker where they went missing.
	if s.lost > 0 && s.n < len(s.ring)-1 {
		s.put(&OverrunEvent{Lost: s.lost, Source: "subscriber queue"})
		s.lost = 0
	}
	if s.lost > 0 || s.n == len(s.ring) {
		s.lost++
		return
	}
	s.put(ev)
	s.cond.Signal()
}

func (s *busSub) put(ev Event) {
	s.ring[(s.head+s.n)%len(s.ring)] = ev
	s.n++
}

func (s *busSub) next() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.n == 0 && s.lost == 0 && !s.closed {
		s.cond.Wait()
	}
	if s.closed {
		return nil, false
	}
	if s.n > 0 {
		ev := s.ring[s.head]
		s.ring[s.head] = nil
		s.head = (s.head + 1) % len(s.ring)
		s.n--
		return ev, true
	}
	ev := &OverrunEvent{Lost: s.lost, Source: "subscriber queue"}
	s.lost = 0
	return ev, true
}

func (s *busSub) pump() {
	defer close(s.out)
	for {
		ev, ok := s.next()
		if !ok {
			return
		}
		select {
		case s.out <- ev:
		case <-s.done:
			return
		}
	}
}
