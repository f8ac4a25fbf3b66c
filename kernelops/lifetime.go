package kernelops

// Software lifetimes, for drivers that claim CapSoftwareLifetimes: their
// dataplane has no lifetimes of its own (VPP) or is a model (nokernel).
// The front end tracks every SA it installs through such a driver.
//
// A lifeManager tracks each SA's soft and hard limits. Time limits (add-time,
// and use-time once the SA was first used) run on timers of a
// clock.Clock: one pending timer per SA at most, armed for the
// SA's next deadline, and no goroutine per SA. Byte and packet limits are
// checked whenever the owner reports counters with Observe — after each
// bulk counter read, or on every packet in a model.
//
// Every SA gets at most one soft and one hard expiry, soft first: when a
// hard limit trips before the soft expiry was delivered and the soft limit
// of the same kind is set, the soft expiry is delivered just before the
// hard one. After the hard expiry the lifeManager forgets the SA; the owner is
// expected to delete it from its dataplane.
//
// Expiries go to the owner's fire callback, never under the lifeManager's lock,
// one at a time and in the order they were decided, so fire may call back
// into the lifeManager (Remove, Observe). fire runs synchronously inside Add,
// Update, Observe, ObserveUsage and SetTimes (in the caller's goroutine)
// or in the clock's timer callback; so either call those without holding
// a lock fire takes, or make fire only queue (Remove, Move, Len and Close
// never deliver and are safe under any lock). A call that decides an
// expiry while another goroutine is delivering leaves the delivery to
// that goroutine.

import (
	"sync"
	"time"

	"github.com/keyplane/keyplane/kernelops/clock"
)

// lifeManager tracks the lifetimes of many SAs. It is safe for concurrent use.
type lifeManager struct {
	clk  clock.Clock
	fire func(*ExpireEvent)

	mu         sync.Mutex
	sas        map[SAID]*lifeTracked
	queue      []*ExpireEvent
	delivering bool
	closed     bool
}

type lifeTracked struct {
	id       SAID
	reqid    uint32
	lt       Lifetimes
	added    time.Time
	firstUse time.Time
	bytes    uint64
	packets  uint64
	softDone bool

	timer   clock.Timer
	timerAt time.Time
	armSeq  uint64 // tells a stale timer callback from the current one
}

// New returns a lifeManager on clk that hands every expiry to fire. The owner
// publishes the event and, for a hard one, deletes the SA.
func newLifeManager(clk clock.Clock, fire func(*ExpireEvent)) *lifeManager {
	if clk == nil {
		clk = clock.Real()
	}
	return &lifeManager{clk: clk, fire: fire, sas: map[SAID]*lifeTracked{}}
}

// Add starts tracking an SA added at added (zero: now), replacing any
// earlier tracking of the same id. A limit already passed at added fires
// at once.
func (m *lifeManager) Add(id SAID, reqid uint32, lt Lifetimes, added time.Time) {
	if added.IsZero() {
		added = m.clk.Now()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	if old := m.sas[id]; old != nil {
		old.stop()
	}
	t := &lifeTracked{id: id, reqid: reqid, lt: lt, added: added}
	m.sas[id] = t
	m.evaluate(t)
	m.mu.Unlock()
	m.deliver()
}

// Update replaces an SA's limits, keeping its counters, times and what has
// already fired (a soft expiry is never delivered twice). It reports
// whether the SA is tracked.
func (m *lifeManager) Update(id SAID, lt Lifetimes) bool {
	return m.with(id, func(t *lifeTracked) { t.lt = lt })
}

// Observe reports an SA's cumulative byte and packet counters and, when
// the owner knows it, the time of first use. Counters that moved from zero
// with no firstUse given mark first use as now: the owner's read interval
// is then the resolution of use-time limits. Counters only ever grow; a
// smaller value than seen before is ignored. It reports whether the SA is
// tracked.
func (m *lifeManager) Observe(id SAID, bytes, packets uint64, firstUse time.Time) bool {
	return m.with(id, func(t *lifeTracked) {
		t.bytes = max(t.bytes, bytes)
		t.packets = max(t.packets, packets)
		if t.firstUse.IsZero() {
			switch {
			case !firstUse.IsZero():
				t.firstUse = firstUse
			case t.bytes > 0 || t.packets > 0:
				t.firstUse = m.clk.Now()
			}
		}
	})
}

// ObserveUsage is Observe from a bulk usage read (ReadUsage).
// Usage carries no first-use time; the first read that shows traffic takes
// LastUsed, when the dataplane fills it, as the first use.
func (m *lifeManager) ObserveUsage(u Usage) bool {
	return m.Observe(u.ID, u.Bytes, u.Packets, u.LastUsed)
}

// SetTimes overrides an SA's add time and first use (zero leaves one
// unchanged) — for an HA standby taking over an SA's lifetime state. It
// reports whether the SA is tracked.
func (m *lifeManager) SetTimes(id SAID, added, firstUse time.Time) bool {
	return m.with(id, func(t *lifeTracked) {
		if !added.IsZero() {
			t.added = added
		}
		if !firstUse.IsZero() {
			t.firstUse = firstUse
		}
	})
}

// Move re-keys an SA whose id changed (a migration to new addresses),
// keeping its state. It reports false if old is not lifeTracked or new is.
func (m *lifeManager) Move(old, new SAID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.sas[old]
	if t == nil || m.sas[new] != nil {
		return false
	}
	delete(m.sas, old)
	t.id = new
	m.sas[new] = t
	return true
}

// Remove stops tracking an SA and cancels its timer; an expiry of it that
// was decided but not yet delivered is still delivered. It reports whether
// the SA was tracked.
func (m *lifeManager) Remove(id SAID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.sas[id]
	if t == nil {
		return false
	}
	t.stop()
	delete(m.sas, id)
	return true
}

// RemoveIf stops tracking every SA for which drop(id, reqid) holds (an
// owned-only flush); like Remove it never delivers.
func (m *lifeManager) RemoveIf(drop func(id SAID, reqid uint32) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, t := range m.sas {
		if drop(id, t.reqid) {
			t.stop()
			delete(m.sas, id)
		}
	}
}

// Len reports how many SAs are tracked.
func (m *lifeManager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sas)
}

// Pending reports how many SAs have a timer armed (for leak tests).
func (m *lifeManager) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, t := range m.sas {
		if t.timer != nil {
			n++
		}
	}
	return n
}

// Close stops every timer and forgets every SA; later calls are no-ops.
func (m *lifeManager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, t := range m.sas {
		t.stop()
	}
	clear(m.sas)
	m.queue = nil
}

// with runs f on a lifeTracked SA under the lock, then re-evaluates it.
func (m *lifeManager) with(id SAID, f func(*lifeTracked)) bool {
	m.mu.Lock()
	t := m.sas[id]
	if t == nil {
		m.mu.Unlock()
		return false
	}
	f(t)
	m.evaluate(t)
	m.mu.Unlock()
	m.deliver()
	return true
}

func (t *lifeTracked) stop() {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
		t.timerAt = time.Time{}
	}
}

// evaluate queues the expiries due now and arms the timer for the next
// deadline. Called with m.mu held.
func (m *lifeManager) evaluate(t *lifeTracked) {
	now := m.clk.Now()
	soft := t.tripped(t.lt.Soft, now)
	hard := t.tripped(t.lt.Hard, now)
	if hard != LimitUnknown {
		if !t.softDone && t.lt.Soft != (Limits{}) {
			// The soft limit of the kind that tripped hard is at or below
			// it, so it has tripped too: keep soft-before-hard.
			if soft == LimitUnknown && limitOf(t.lt.Soft, hard) != 0 {
				soft = hard
			}
			if soft != LimitUnknown {
				m.queue = append(m.queue, t.event(false, soft))
			}
		}
		t.softDone = true
		m.queue = append(m.queue, t.event(true, hard))
		t.stop()
		delete(m.sas, t.id)
		return
	}
	if soft != LimitUnknown && !t.softDone {
		t.softDone = true
		m.queue = append(m.queue, t.event(false, soft))
	}
	m.arm(t, now)
}

func (t *lifeTracked) event(hard bool, k LimitKind) *ExpireEvent {
	return &ExpireEvent{SA: t.id, ReqID: t.reqid, Hard: hard, Limit: k}
}

// tripped returns the first limit of l reached at now, or LimitUnknown.
func (t *lifeTracked) tripped(l Limits, now time.Time) LimitKind {
	switch {
	case l.Bytes != 0 && t.bytes >= l.Bytes:
		return LimitBytes
	case l.Packets != 0 && t.packets >= l.Packets:
		return LimitPackets
	case l.AddTime != 0 && !now.Before(t.added.Add(l.AddTime)):
		return LimitAddTime
	case l.UseTime != 0 && !t.firstUse.IsZero() && !now.Before(t.firstUse.Add(l.UseTime)):
		return LimitUseTime
	}
	return LimitUnknown
}

func limitOf(l Limits, k LimitKind) uint64 {
	switch k {
	case LimitBytes:
		return l.Bytes
	case LimitPackets:
		return l.Packets
	case LimitAddTime:
		return uint64(l.AddTime)
	case LimitUseTime:
		return uint64(l.UseTime)
	}
	return 0
}

// arm sets the SA's single timer to its earliest pending time deadline.
func (m *lifeManager) arm(t *lifeTracked, now time.Time) {
	var next time.Time
	consider := func(l Limits) {
		if l.AddTime != 0 {
			next = earliestTime(next, t.added.Add(l.AddTime))
		}
		if l.UseTime != 0 && !t.firstUse.IsZero() {
			next = earliestTime(next, t.firstUse.Add(l.UseTime))
		}
	}
	if !t.softDone {
		consider(t.lt.Soft)
	}
	consider(t.lt.Hard)
	if next.Equal(t.timerAt) && t.timer != nil {
		return
	}
	t.stop()
	if next.IsZero() {
		return
	}
	t.timerAt = next
	t.armSeq++
	seq := t.armSeq
	t.timer = m.clk.AfterFunc(max(next.Sub(now), 0), func() { m.onTimer(t, seq) })
}

func earliestTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func (m *lifeManager) onTimer(t *lifeTracked, seq uint64) {
	m.mu.Lock()
	if m.sas[t.id] != t || t.timer == nil || t.armSeq != seq {
		m.mu.Unlock() // removed, replaced or re-armed since
		return
	}
	t.timer, t.timerAt = nil, time.Time{}
	m.evaluate(t)
	m.mu.Unlock()
	m.deliver()
}

// deliver hands queued expiries to fire, one at a time, outside the lock.
func (m *lifeManager) deliver() {
	m.mu.Lock()
	if m.delivering {
		m.mu.Unlock()
		return
	}
	m.delivering = true
	for len(m.queue) > 0 {
		ev := m.queue[0]
		m.queue[0] = nil
		m.queue = m.queue[1:]
		m.mu.Unlock()
		if m.fire != nil {
			m.fire(ev)
		}
		m.mu.Lock()
	}
	m.queue = nil
	m.delivering = false
	m.mu.Unlock()
}
