package kernelops

// Software lifetimes, for drivers that claim CapSoftwareLifetimes: their
// dataplane has no lifetimes of its own (VPP) or is a model (nokernel).
// The front end tracks every SA it installs through such a driver.
//
// A lifeManager tracks each SA's soft and hard limits. Time limits (add-time,
// and use-time once the SA was first used) run on one timer of a
// clock.Clock: the SAs' next deadlines are kept in a heap and the timer is
// armed for the earliest, so there is no timer and no goroutine per SA (a
// runtime timer and its callback cost ≈170 bytes per SA at 100,000). Byte and packet limits are
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

	"github.com/keyplane/keyplane/internal/caddr"
	"github.com/keyplane/keyplane/internal/chainmap"
	"github.com/keyplane/keyplane/internal/indexheap"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// lifeManager tracks the lifetimes of many SAs. It is safe for concurrent use.
type lifeManager struct {
	clk  clock.Clock
	fire func(*ExpireEvent)
	// The SAs' stamps count from clk.Now() at creation, read back by
	// their kind from it (stampMono) or its wall clock (stampWall).
	epoch [3]time.Time

	mu         sync.Mutex
	sas        chainmap.Map[SAID, lifeTracked, *lifeTracked] // under a hash of the 64-octet SAID: a 16-byte slot per SA, not 72
	due        indexheap.Heap[lifeTracked, *lifeTracked]     // the SAs with a time deadline, earliest first
	timer      clock.Timer
	timerAt    time.Time // when timer fires (zero: not armed)
	timerSeq   uint64    // tells a stale timer callback from the current one
	queue      []*ExpireEvent
	delivering bool
	closed     bool
}

// lifeTracked is an SA's lifetime state, kept compactly: its ID's
// addresses as caddrs (a zone, which few SAs have, apart in zones), its
// times as stamps, their kinds and softDone in one octet. It fills the
// 176-octet size class (TestLifeTrackedSize).
type lifeTracked struct {
	lt             Lifetimes
	st             [3]stamp // stAdded, stFirstUse, stTimerAt
	bytes, packets uint64
	next           *lifeTracked // the next of the same hash (sas)
	zones          *[2]string   // the zones of src and dst when either is caddr.Zoned; else nil
	mark           Mark         // the SA's ID: src, dst, spi, proto, mark
	reqid          uint32
	at             int32 // its index in lifeManager.due, -1 when not there
	spi            uint32
	src, dst       caddr.Addr
	proto          Proto
	flags          lifeFlags
}

// The stamps of a lifeTracked, by index in st: when it was added, first
// used, and its next time deadline (timerAt).
const (
	stAdded = iota
	stFirstUse
	stTimerAt
)

// lifeFlags are a lifeTracked's stamps' kinds, two bits each by index in
// st (stampNone: the zero time: firstUse not yet, timerAt not armed),
// and lifeSoftDone.
type lifeFlags uint8

const lifeSoftDone lifeFlags = 1 << 6 // the soft expiry was delivered (or passed over)

// kind is the kind of stamp i.
func (t *lifeTracked) kind(i int) stampKind { return stampKind(t.flags>>(2*i)) & 3 }

// set sets stamp i and its kind.
func (t *lifeTracked) set(i int, s stamp, k stampKind) {
	t.st[i] = s
	t.flags = t.flags&^(3<<(2*i)) | lifeFlags(k)<<(2*i)
}

func (t *lifeTracked) softDone() bool { return t.flags&lifeSoftDone != 0 }

// said is t's SA ID.
func (t *lifeTracked) said() SAID {
	var zs [2]string
	if t.zones != nil {
		zs = *t.zones
	}
	return SAID{Src: t.src.Unpack(zs[0]), Dst: t.dst.Unpack(zs[1]), SPI: t.spi, Proto: t.proto, Mark: t.mark}
}

// setID sets t's SA ID.
func (t *lifeTracked) setID(id SAID) {
	t.src, t.dst = caddr.Pack(id.Src), caddr.Pack(id.Dst)
	t.spi, t.proto, t.mark = id.SPI, id.Proto, id.Mark
	t.zones = nil
	if t.src.Kind() == caddr.Zoned || t.dst.Kind() == caddr.Zoned {
		t.zones = &[2]string{id.Src.Zone(), id.Dst.Zone()}
	}
}

// A stamp is a time in 8 octets, not time.Time's 24 (a lifeTracked fits
// the 176-octet size class): nanoseconds from the lifeManager's epoch,
// negative before it; one more than 292 years away reads back as 292
// years away. Its stampKind, kept apart, says whether it has a monotonic
// clock reading: time.Time compares two times by it when both have one
// and by the wall clock otherwise, so a time read back compares with
// clk.Now() as the time stored did, also after the wall clock was set.
type stamp int64

type stampKind uint8

const (
	stampNone stampKind = iota // the zero time
	stampMono                  // monotonic when the epoch is
	stampWall                  // no monotonic reading
)

// stampOf returns t as a stamp.
func (m *lifeManager) stampOf(t time.Time) (stamp, stampKind) {
	k := stampMono
	switch {
	case t.IsZero():
		return 0, stampNone
	case t == t.Round(0): // no monotonic reading (Round(0) strips it)
		k = stampWall
	}
	return stamp(t.Sub(m.epoch[k])), k
}

// timeOf is the time of a stamp.
func (m *lifeManager) timeOf(s stamp, k stampKind) time.Time {
	if k == stampNone {
		return time.Time{}
	}
	return m.epoch[k].Add(time.Duration(s))
}

// timeAt is the time of t's stamp i.
func (m *lifeManager) timeAt(t *lifeTracked, i int) time.Time { return m.timeOf(t.st[i], t.kind(i)) }

// setTime sets t's stamp i to tm.
func (m *lifeManager) setTime(t *lifeTracked, i int, tm time.Time) {
	s, k := m.stampOf(tm)
	t.set(i, s, k)
}

func (t *lifeTracked) ChainKey() SAID           { return t.said() }
func (t *lifeTracked) ChainNext() **lifeTracked { return &t.next }

// The heap of time deadlines orders SAs by their next one. Two stamps
// compare as the times they read back as: by monotonic readings or wall
// clocks both counted from the epoch's.
func (t *lifeTracked) HeapLess(u *lifeTracked) bool { return t.st[stTimerAt] < u.st[stTimerAt] }
func (t *lifeTracked) HeapIndex() *int32            { return &t.at }

// New returns a lifeManager on clk that hands every expiry to fire. The owner
// publishes the event and, for a hard one, deletes the SA.
func newLifeManager(clk clock.Clock, fire func(*ExpireEvent)) *lifeManager {
	if clk == nil {
		clk = clock.Real()
	}
	epoch := clk.Now()
	return &lifeManager{clk: clk, fire: fire, epoch: [3]time.Time{stampMono: epoch, stampWall: epoch.Round(0)}}
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
	if old := m.sas.Get(id); old != nil {
		m.unarm(old)
		m.sas.Delete(id)
	}
	t := &lifeTracked{reqid: reqid, lt: lt, at: -1}
	t.setID(id)
	m.setTime(t, stAdded, added)
	m.sas.Put(t)
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

// Lifetimes returns an SA's limits as last added or updated; false when
// it is not tracked.
func (m *lifeManager) Lifetimes(id SAID) (Lifetimes, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.sas.Get(id); t != nil {
		return t.lt, true
	}
	return Lifetimes{}, false
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
		if t.kind(stFirstUse) == stampNone {
			switch {
			case !firstUse.IsZero():
				m.setTime(t, stFirstUse, firstUse)
			case t.bytes > 0 || t.packets > 0:
				m.setTime(t, stFirstUse, m.clk.Now())
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
			m.setTime(t, stAdded, added)
		}
		if !firstUse.IsZero() {
			m.setTime(t, stFirstUse, firstUse)
		}
	})
}

// Move re-keys an SA whose id changed (a migration to new addresses),
// keeping its state. It reports false if old is not lifeTracked or new is.
func (m *lifeManager) Move(old, new SAID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.sas.Get(old)
	if t == nil || m.sas.Get(new) != nil {
		return false
	}
	m.sas.Delete(old)
	t.setID(new)
	m.sas.Put(t)
	return true
}

// Remove stops tracking an SA and cancels its timer; an expiry of it that
// was decided but not yet delivered is still delivered. It reports whether
// the SA was tracked.
func (m *lifeManager) Remove(id SAID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.sas.Get(id)
	if t == nil {
		return false
	}
	m.unarm(t)
	m.sas.Delete(id)
	return true
}

// RemoveIf stops tracking every SA for which drop(id, reqid) holds (an
// owned-only flush); like Remove it never delivers.
func (m *lifeManager) RemoveIf(drop func(id SAID, reqid uint32) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var gone []*lifeTracked
	for t := range m.sas.All() {
		if drop(t.said(), t.reqid) {
			gone = append(gone, t)
		}
	}
	for _, t := range gone {
		m.unarm(t)
		m.sas.Delete(t.said())
	}
}

// Len reports how many SAs are tracked.
func (m *lifeManager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sas.Len()
}

// Pending reports how many SAs have a timer armed (for leak tests).
func (m *lifeManager) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.due.Len()
}

// Close stops every timer and forgets every SA; later calls are no-ops.
func (m *lifeManager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for t := range m.sas.All() {
		t.set(stTimerAt, 0, stampNone)
	}
	m.due.Clear()
	m.setTimer(m.clk.Now())
	m.sas = chainmap.Map[SAID, lifeTracked, *lifeTracked]{}
	m.queue = nil
}

// with runs f on a lifeTracked SA under the lock, then re-evaluates it.
func (m *lifeManager) with(id SAID, f func(*lifeTracked)) bool {
	m.mu.Lock()
	t := m.sas.Get(id)
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

// unarm takes t's deadline out of the heap. Called with m.mu held.
func (m *lifeManager) unarm(t *lifeTracked) {
	if t.at >= 0 {
		m.due.Remove(t)
		t.set(stTimerAt, 0, stampNone)
		m.setTimer(m.clk.Now())
	}
}

// evaluate queues the expiries due now and arms the timer for the next
// deadline. Called with m.mu held.
func (m *lifeManager) evaluate(t *lifeTracked) {
	now := m.clk.Now()
	added, firstUse := m.timeAt(t, stAdded), m.timeAt(t, stFirstUse)
	soft := t.tripped(t.lt.Soft, now, added, firstUse)
	hard := t.tripped(t.lt.Hard, now, added, firstUse)
	if hard != LimitUnknown {
		if !t.softDone() && t.lt.Soft != (Limits{}) {
			// The soft limit of the kind that tripped hard is at or below
			// it, so it has tripped too: keep soft-before-hard.
			if soft == LimitUnknown && limitOf(t.lt.Soft, hard) != 0 {
				soft = hard
			}
			if soft != LimitUnknown {
				m.queue = append(m.queue, t.event(false, soft))
			}
		}
		t.flags |= lifeSoftDone
		m.queue = append(m.queue, t.event(true, hard))
		m.unarm(t)
		m.sas.Delete(t.said())
		return
	}
	if soft != LimitUnknown && !t.softDone() {
		t.flags |= lifeSoftDone
		m.queue = append(m.queue, t.event(false, soft))
	}
	m.arm(t, now, added, firstUse)
}

func (t *lifeTracked) event(hard bool, k LimitKind) *ExpireEvent {
	return &ExpireEvent{SA: t.said(), ReqID: t.reqid, Hard: hard, Limit: k}
}

// tripped returns the first limit of l reached at now, or LimitUnknown;
// added and firstUse are t's.
func (t *lifeTracked) tripped(l Limits, now, added, firstUse time.Time) LimitKind {
	switch {
	case l.Bytes != 0 && t.bytes >= l.Bytes:
		return LimitBytes
	case l.Packets != 0 && t.packets >= l.Packets:
		return LimitPackets
	case l.AddTime != 0 && !now.Before(added.Add(l.AddTime)):
		return LimitAddTime
	case l.UseTime != 0 && !firstUse.IsZero() && !now.Before(firstUse.Add(l.UseTime)):
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

// arm puts the SA's earliest pending time deadline in the heap; added
// and firstUse are t's.
func (m *lifeManager) arm(t *lifeTracked, now, added, firstUse time.Time) {
	var next time.Time
	consider := func(l Limits) {
		if l.AddTime != 0 {
			next = earliestTime(next, added.Add(l.AddTime))
		}
		if l.UseTime != 0 && !firstUse.IsZero() {
			next = earliestTime(next, firstUse.Add(l.UseTime))
		}
	}
	if !t.softDone() {
		consider(t.lt.Soft)
	}
	consider(t.lt.Hard)
	if t.at >= 0 && next.Equal(m.timeAt(t, stTimerAt)) {
		return
	}
	if next.IsZero() {
		m.unarm(t)
		return
	}
	m.setTime(t, stTimerAt, next)
	if t.at >= 0 {
		m.due.Fix(t)
	} else {
		m.due.Push(t)
	}
	m.setTimer(now)
}

// setTimer arms the one timer for the earliest deadline in the heap, or
// stops it when there is none. Called with m.mu held.
func (m *lifeManager) setTimer(now time.Time) {
	var next time.Time
	if top := m.due.Top(); top != nil {
		next = m.timeAt(top, stTimerAt)
	}
	if next.Equal(m.timerAt) && (m.timer != nil) == !next.IsZero() {
		return
	}
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.timerAt = next
	m.timerSeq++
	if next.IsZero() {
		return
	}
	seq := m.timerSeq
	m.timer = m.clk.AfterFunc(max(next.Sub(now), 0), func() { m.onTimer(seq) })
}

func earliestTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// onTimer evaluates every SA whose deadline has come, earliest first
// (their expiries are queued in that order).
func (m *lifeManager) onTimer(seq uint64) {
	m.mu.Lock()
	if m.timerSeq != seq {
		m.mu.Unlock() // re-armed or stopped since
		return
	}
	m.timer, m.timerAt = nil, time.Time{}
	now := m.clk.Now()
	// Take the due ones out first: one whose limit is not yet reached
	// (its deadline rounded) goes back in and waits for the next timer.
	var due []*lifeTracked
	for m.due.Len() > 0 && !now.Before(m.timeAt(m.due.Top(), stTimerAt)) {
		t := m.due.Pop()
		t.set(stTimerAt, 0, stampNone)
		due = append(due, t)
	}
	for _, t := range due {
		if m.sas.Get(t.said()) == t {
			m.evaluate(t)
		}
	}
	m.setTimer(now)
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
