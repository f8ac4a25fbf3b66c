package ike

import (
	"sync"
	"time"
)

// Event is one state change of the engine, for `keyplane events` and
// tests. Dataplane events are passed on as Kind "dataplane".
type Event struct {
	Time time.Time `json:"time"`
	Kind EventKind `json:"kind"`
	Name string    `json:"name,omitempty"`
	// State is an IKEState or ChildState for a state change of an IKE or
	// CHILD SA, else what happened (see the EventKind constants).
	State  string `json:"state,omitempty"`
	Reason string `json:"reason,omitempty"`
	SPIs   SPIs   `json:"spis,omitzero"`
	Detail string `json:"detail,omitempty"`
	// IKEID and ChildID are the unique IDs of the SA the event is about
	// (0: none; a child's event carries its IKE SA's too).
	IKEID   uint32 `json:"ike_id,omitempty"`
	ChildID uint32 `json:"child_id,omitempty"`
}

// Subscription delivers engine events until closed. A subscriber that
// falls behind loses events and receives one Kind "overrun" event in
// their place.
type Subscription struct {
	C    <-chan Event
	b    *bus
	ch   chan Event
	lost int
}

// Close ends the subscription.
func (s *Subscription) Close() { s.b.remove(s) }

type bus struct {
	mu     sync.Mutex
	subs   map[*Subscription]bool
	closed bool
}

func newBus() *bus { return &bus{subs: map[*Subscription]bool{}} }

// Subscribe opens a subscription to the engine's events.
func (e *Engine) Subscribe() *Subscription { return e.subscribe(256) }

// subscribe opens a subscription with room for n events.
func (e *Engine) subscribe(n int) *Subscription {
	ch := make(chan Event, n)
	s := &Subscription{C: ch, b: e.bus, ch: ch}
	e.bus.mu.Lock()
	defer e.bus.mu.Unlock()
	if e.bus.closed {
		close(ch)
		return s
	}
	e.bus.subs[s] = true
	return s
}

func (b *bus) publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.lost > 0 {
			select {
			case s.ch <- Event{Time: ev.Time, Kind: "overrun", Detail: "events lost"}:
				s.lost = 0
			default:
				s.lost++
				continue
			}
		}
		select {
		case s.ch <- ev:
		default:
			s.lost++
		}
	}
}

func (b *bus) remove(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs[s] {
		delete(b.subs, s)
		close(s.ch)
	}
}

func (b *bus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.ch)
	}
}

func (e *Engine) publish(ev Event) {
	ev.Time = e.clk.Now()
	if e.onEvent != nil {
		e.onEvent(ev)
	}
	e.bus.publish(ev)
}
