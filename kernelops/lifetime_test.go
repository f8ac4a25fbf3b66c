package kernelops

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/keyplane/keyplane/kernelops/clock"
)

// expiryRecorder collects fired expiries.
type expiryRecorder struct {
	mu  sync.Mutex
	evs []ExpireEvent
}

func (r *expiryRecorder) fire(ev *ExpireEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, *ev)
}

func (r *expiryRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.evs))
	for i, e := range r.evs {
		kind := "soft"
		if e.Hard {
			kind = "hard"
		}
		out[i] = fmt.Sprintf("%#x %s %s", e.SA.SPI, kind, e.Limit)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLifetimes(t *testing.T) {
	type step struct {
		advance        time.Duration
		bytes, packets uint64 // observed after advancing, when either is non-zero
		want           []string
	}
	tests := []struct {
		name  string
		lt    Lifetimes
		steps []step
	}{
		{
			name: "add-time soft then hard",
			lt:   Lifetimes{Soft: Limits{AddTime: 10 * time.Second}, Hard: Limits{AddTime: 20 * time.Second}},
			steps: []step{
				{advance: 9 * time.Second},
				{advance: time.Second, want: []string{"0x100 soft add-time"}},
				{advance: 9 * time.Second, want: []string{"0x100 soft add-time"}},
				{advance: time.Second, want: []string{"0x100 soft add-time", "0x100 hard add-time"}},
				{advance: time.Hour, want: []string{"0x100 soft add-time", "0x100 hard add-time"}},
			},
		},
		{
			name: "use-time starts at first use",
			lt:   Lifetimes{Soft: Limits{UseTime: 5 * time.Second}, Hard: Limits{UseTime: 8 * time.Second}},
			steps: []step{
				{advance: time.Hour},
				{bytes: 100, packets: 1},
				{advance: 4 * time.Second},
				{advance: time.Second, want: []string{"0x100 soft use-time"}},
				{advance: 3 * time.Second, want: []string{"0x100 soft use-time", "0x100 hard use-time"}},
			},
		},
		{
			name: "bytes soft then hard",
			lt:   Lifetimes{Soft: Limits{Bytes: 1000}, Hard: Limits{Bytes: 2000}},
			steps: []step{
				{bytes: 999, packets: 1},
				{bytes: 1000, packets: 2, want: []string{"0x100 soft bytes"}},
				{bytes: 1999, packets: 3, want: []string{"0x100 soft bytes"}},
				{bytes: 2000, packets: 4, want: []string{"0x100 soft bytes", "0x100 hard bytes"}},
				{bytes: 9000, packets: 5, want: []string{"0x100 soft bytes", "0x100 hard bytes"}},
			},
		},
		{
			name: "packets: one jump over both fires soft then hard",
			lt:   Lifetimes{Soft: Limits{Packets: 10}, Hard: Limits{Packets: 20}},
			steps: []step{
				{bytes: 5000, packets: 50, want: []string{"0x100 soft packets", "0x100 hard packets"}},
			},
		},
		{
			name: "hard only",
			lt:   Lifetimes{Hard: Limits{Packets: 3}},
			steps: []step{
				{bytes: 1, packets: 3, want: []string{"0x100 hard packets"}},
			},
		},
		{
			name: "soft time, hard bytes",
			lt:   Lifetimes{Soft: Limits{AddTime: time.Minute}, Hard: Limits{Bytes: 100}},
			steps: []step{
				{advance: time.Minute, want: []string{"0x100 soft add-time"}},
				{bytes: 100, packets: 1, want: []string{"0x100 soft add-time", "0x100 hard bytes"}},
			},
		},
		{
			name: "hard bytes before a soft time limit: no soft",
			lt:   Lifetimes{Soft: Limits{AddTime: time.Minute}, Hard: Limits{Bytes: 100}},
			steps: []step{
				{bytes: 100, packets: 1, want: []string{"0x100 hard bytes"}},
				{advance: time.Hour, want: []string{"0x100 hard bytes"}},
			},
		},
		{
			name: "equal soft and hard time: soft first",
			lt:   Lifetimes{Soft: Limits{AddTime: time.Minute}, Hard: Limits{AddTime: time.Minute}},
			steps: []step{
				{advance: time.Minute, want: []string{"0x100 soft add-time", "0x100 hard add-time"}},
			},
		},
		{
			name: "no limits never fire",
			steps: []step{
				{advance: 1000 * time.Hour},
				{bytes: 1 << 60, packets: 1 << 50},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			var r expiryRecorder
			m := newLifeManager(clk, r.fire)
			m.Add(testSAID(0x100), 7, tt.lt, time.Time{})
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				if s.bytes != 0 || s.packets != 0 {
					m.Observe(testSAID(0x100), s.bytes, s.packets, time.Time{})
				}
				if got := r.got(); !equal(got, s.want) {
					t.Fatalf("step %d: fired %q, want %q", i, got, s.want)
				}
			}
			hardFired := len(r.got()) > 0 && r.evs[len(r.evs)-1].Hard
			if hardFired && (m.Len() != 0 || clk.Pending() != 0) {
				t.Errorf("after hard: %d SAs lifeTracked, %d timers pending; want 0, 0", m.Len(), clk.Pending())
			}
			for _, e := range r.evs {
				if e.ReqID != 7 {
					t.Errorf("event reqid %d, want 7", e.ReqID)
				}
			}
		})
	}
}

func TestRemoveCancels(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	lt := Lifetimes{Soft: Limits{AddTime: time.Second}, Hard: Limits{AddTime: 2 * time.Second}}
	m.Add(testSAID(0x100), 1, lt, time.Time{})
	if clk.Pending() != 1 {
		t.Fatalf("pending timers %d, want 1 (one per SA)", clk.Pending())
	}
	if !m.Remove(testSAID(0x100)) {
		t.Fatal("Remove of a lifeTracked SA reported false")
	}
	if m.Remove(testSAID(0x100)) {
		t.Fatal("second Remove reported true")
	}
	if clk.Pending() != 0 {
		t.Fatalf("pending timers after Remove %d, want 0", clk.Pending())
	}
	clk.Advance(time.Hour)
	if got := r.got(); len(got) != 0 {
		t.Fatalf("fired after Remove: %q", got)
	}
}

func TestUpdateKeepsFired(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	id := testSAID(0x100)
	m.Add(id, 1, Lifetimes{Soft: Limits{Bytes: 10}}, time.Time{})
	m.Observe(id, 10, 1, time.Time{})
	// New limits: a lower soft limit must not fire again; the new hard one must.
	if !m.Update(id, Lifetimes{Soft: Limits{Bytes: 5}, Hard: Limits{AddTime: time.Minute}}) {
		t.Fatal("Update of a lifeTracked SA reported false")
	}
	clk.Advance(time.Minute)
	want := []string{"0x100 soft bytes", "0x100 hard add-time"}
	if got := r.got(); !equal(got, want) {
		t.Fatalf("fired %q, want %q", got, want)
	}
	if m.Update(id, Lifetimes{}) {
		t.Fatal("Update after hard expiry reported the SA lifeTracked")
	}
}

func TestUpdateRearms(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	id := testSAID(0x100)
	m.Add(id, 1, Lifetimes{Hard: Limits{AddTime: time.Hour}}, time.Time{})
	clk.Advance(time.Minute)
	m.Update(id, Lifetimes{Hard: Limits{AddTime: 2 * time.Minute}})
	if clk.Pending() != 1 {
		t.Fatalf("pending timers %d, want 1 after re-arm", clk.Pending())
	}
	clk.Advance(time.Minute)
	if got, want := r.got(), []string{"0x100 hard add-time"}; !equal(got, want) {
		t.Fatalf("fired %q, want %q (limit counts from the add time)", got, want)
	}
}

func TestSetTimesAndMove(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	old, moved := testSAID(0x100), testSAID(0x100)
	moved.Dst = netip.MustParseAddr("203.0.113.9")
	m.Add(old, 1, Lifetimes{Hard: Limits{AddTime: time.Hour}}, time.Time{})
	// An HA standby's SA was added 59 minutes before ours.
	m.SetTimes(old, t0.Add(-59*time.Minute), time.Time{})
	if !m.Move(old, moved) {
		t.Fatal("Move reported false")
	}
	if m.Move(old, moved) {
		t.Fatal("Move of an untracked id reported true")
	}
	clk.Advance(time.Minute)
	if len(r.evs) != 1 || r.evs[0].SA != moved {
		t.Fatalf("fired %+v, want one hard expiry of the moved id", r.evs)
	}
}

func TestObserveUsageFirstUse(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	id := testSAID(0x100)
	m.Add(id, 1, Lifetimes{Hard: Limits{UseTime: 10 * time.Second}}, time.Time{})
	clk.Advance(time.Minute)
	// The bulk read says the SA was last used 8s ago: first use no later.
	m.ObserveUsage(Usage{ID: id, Bytes: 1, Packets: 1, LastUsed: clk.Now().Add(-8 * time.Second)})
	clk.Advance(time.Second)
	if len(r.evs) != 0 {
		t.Fatalf("fired early: %q", r.got())
	}
	clk.Advance(time.Second)
	if got, want := r.got(), []string{"0x100 hard use-time"}; !equal(got, want) {
		t.Fatalf("fired %q, want %q", got, want)
	}
}

// TestFireReenters checks that the callback may delete the SA (call
// Remove) and report more counters without deadlocking, as owners do.
func TestFireReenters(t *testing.T) {
	clk := clock.NewFake(t0)
	var m *lifeManager
	var got []string
	m = newLifeManager(clk, func(ev *ExpireEvent) {
		got = append(got, fmt.Sprintf("%v/%s", ev.Hard, ev.Limit))
		m.Remove(ev.SA)
		m.Observe(testSAID(0x200), 100, 100, time.Time{})
	})
	m.Add(testSAID(0x100), 1, Lifetimes{Soft: Limits{Packets: 1}}, time.Time{})
	m.Add(testSAID(0x200), 1, Lifetimes{Hard: Limits{Packets: 2}}, time.Time{})
	m.Observe(testSAID(0x100), 1, 1, time.Time{})
	if want := []string{"false/packets", "true/packets"}; !equal(got, want) {
		t.Fatalf("fired %q, want %q", got, want)
	}
}

func TestClose(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	for i := range 100 {
		m.Add(testSAID(uint32(0x100+i)), 1, Lifetimes{Hard: Limits{AddTime: time.Second}}, time.Time{})
	}
	m.Close()
	if clk.Pending() != 0 || m.Len() != 0 {
		t.Fatalf("after Close: %d timers, %d SAs; want 0, 0", clk.Pending(), m.Len())
	}
	m.Add(testSAID(1000), 1, Lifetimes{Hard: Limits{AddTime: time.Second}}, time.Time{})
	clk.Advance(time.Hour)
	if len(r.evs) != 0 {
		t.Fatalf("fired after Close: %q", r.got())
	}
}

// TestConcurrentRealClock runs many SAs on the real clock from several
// goroutines: each must get exactly one soft then one hard expiry, in
// that order, and nothing may stay armed.
func TestConcurrentRealClock(t *testing.T) {
	const workers, per = 8, 50
	var mu sync.Mutex
	seen := map[SAID][]bool{}
	done := make(chan struct{})
	var hards int
	m := newLifeManager(clock.Real(), func(ev *ExpireEvent) {
		mu.Lock()
		defer mu.Unlock()
		seen[ev.SA] = append(seen[ev.SA], ev.Hard)
		if ev.Hard {
			hards++
			if hards == workers*per {
				close(done)
			}
		}
	})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				id := testSAID(uint32(0x1000 + w*per + i))
				var lt Lifetimes
				if i%2 == 0 {
					lt = Lifetimes{Soft: Limits{AddTime: 5 * time.Millisecond}, Hard: Limits{AddTime: 10 * time.Millisecond}}
				} else {
					lt = Lifetimes{Soft: Limits{Packets: 5}, Hard: Limits{Packets: 10, AddTime: time.Hour}}
				}
				m.Add(id, 1, lt, time.Time{})
				if i%2 == 1 {
					for p := uint64(1); p <= 12; p++ {
						m.Observe(id, p*100, p, time.Time{})
					}
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not every SA hard-expired within 10s")
	}
	mu.Lock()
	defer mu.Unlock()
	for id, evs := range seen {
		if len(evs) != 2 || evs[0] || !evs[1] {
			t.Errorf("%v: expiries %v, want [soft hard]", id, evs)
		}
	}
	if m.Len() != 0 || m.Pending() != 0 {
		t.Errorf("after every hard expiry: %d lifeTracked, %d armed; want 0, 0", m.Len(), m.Pending())
	}
}

// TestOneTimerManySAs: SAs with deadlines in any order, some moved or
// removed, expire in deadline order on one clock timer, which is stopped
// once nothing is left to wait for.
func TestOneTimerManySAs(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	const n = 50
	var want []string
	for i := range n {
		d := time.Duration((i*37)%n+1) * time.Second // distinct, shuffled
		m.Add(testSAID(uint32(0x100+i)), 1, Lifetimes{Hard: Limits{AddTime: d}}, time.Time{})
	}
	if clk.Pending() != 1 || m.Pending() != n {
		t.Fatalf("%d clock timers, %d SAs armed; want 1, %d", clk.Pending(), m.Pending(), n)
	}
	m.Remove(testSAID(0x100))                                                      // due at 1 s
	m.Update(testSAID(0x101), Lifetimes{Hard: Limits{AddTime: 100 * time.Second}}) // 38 s → 100 s
	for s := 1; s <= 100; s++ {
		for i := 1; i < n; i++ {
			d := (i*37)%n + 1
			if i == 1 {
				d = 100
			}
			if d == s {
				want = append(want, fmt.Sprintf("%#x hard add-time", 0x100+i))
			}
		}
	}
	clk.Advance(99 * time.Second)
	if clk.Pending() != 1 || m.Pending() != 1 {
		t.Fatalf("at 99 s: %d clock timers, %d SAs armed; want 1, 1", clk.Pending(), m.Pending())
	}
	clk.Advance(time.Second)
	if got := r.got(); !equal(got, want) {
		t.Fatalf("fired %q,\nwant %q", got, want)
	}
	if clk.Pending() != 0 || m.Pending() != 0 || m.Len() != 0 {
		t.Fatalf("after all: %d clock timers, %d armed, %d tracked; want 0", clk.Pending(), m.Pending(), m.Len())
	}
}

// TestLifeTableCollisions: with every ID under one hash, SAs are still
// found by ID, moved and removed from any place in the chain, and expire.
func TestLifeTableCollisions(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	m.sas.CollideForTest()
	for i := range 5 {
		m.Add(testSAID(uint32(0x100+i)), 1, Lifetimes{Hard: Limits{AddTime: time.Duration(i+1) * time.Second}}, time.Time{})
	}
	if !m.Remove(testSAID(0x102)) || m.Remove(testSAID(0x102)) {
		t.Fatal("Remove from the middle of a chain")
	}
	if !m.Move(testSAID(0x104), testSAID(0x200)) || m.Move(testSAID(0x100), testSAID(0x101)) {
		t.Fatal("Move in a chain")
	}
	if m.Len() != 4 {
		t.Fatalf("%d tracked, want 4", m.Len())
	}
	clk.Advance(10 * time.Second)
	want := []string{"0x100 hard add-time", "0x101 hard add-time", "0x103 hard add-time", "0x200 hard add-time"}
	if got := r.got(); !equal(got, want) {
		t.Fatalf("fired %q, want %q", got, want)
	}
	if m.Len() != 0 || m.Pending() != 0 {
		t.Fatalf("after every expiry: %d tracked, %d pending", m.Len(), m.Pending())
	}
}

// TestLifeTrackedSize: a lifeTracked is allocated per SA tracked (two per
// IKE child SA end) and fits the 176-octet size class with no padding
// left: its ID's addresses as caddrs, its times as stamps, their kinds and
// softDone in one octet. The next class is 192 octets; a field that must
// be added displaces another, or goes apart like zones when few SAs need it.
func TestLifeTrackedSize(t *testing.T) {
	if n := unsafe.Sizeof(lifeTracked{}); n > 176 {
		t.Errorf("lifeTracked is %d octets, over the 176-octet size class", n)
	}
}

// TestLifeTrackedIDs: an SA's ID reads back exactly (==) from its compact
// form, in the events and in RemoveIf, for addresses of every family and
// with zones; two IDs that differ only in a zone, or in one family's form
// of an address, are tracked apart.
func TestLifeTrackedIDs(t *testing.T) {
	clk := clock.NewFake(t0)
	var r expiryRecorder
	m := newLifeManager(clk, r.fire)
	addrs := []netip.Addr{{}, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.1"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fe80::1%eth1"),
		netip.MustParseAddr("fe80::1")}
	var ids []SAID
	for i, a := range addrs {
		ids = append(ids, SAID{Src: a, Dst: addrs[len(addrs)-1-i], SPI: uint32(0x100 + i), Proto: ProtoESP, Mark: Mark{Value: 7, Mask: 0xff}},
			SAID{Src: addrs[4], Dst: a, SPI: 0x200, Proto: ProtoAH})
	}
	for i, id := range ids {
		m.Add(id, uint32(i), Lifetimes{Hard: Limits{AddTime: time.Duration(i+1) * time.Second}}, time.Time{})
	}
	if m.Len() != len(ids) {
		t.Fatalf("%d tracked, want %d", m.Len(), len(ids))
	}
	for i, id := range ids {
		if lt, ok := m.Lifetimes(id); !ok || lt.Hard.AddTime != time.Duration(i+1)*time.Second {
			t.Errorf("%v: lifetimes %v, %v", id, lt, ok)
		}
	}
	seen := map[SAID]uint32{}
	m.RemoveIf(func(id SAID, reqid uint32) bool { seen[id] = reqid; return false })
	for i, id := range ids {
		if r, ok := seen[id]; !ok || r != uint32(i) {
			t.Errorf("RemoveIf: %v seen %v with reqid %d, want %d", id, ok, r, i)
		}
	}
	clk.Advance(time.Duration(len(ids)) * time.Second)
	if len(r.evs) != len(ids) {
		t.Fatalf("%d expiries, want %d", len(r.evs), len(ids))
	}
	for i, ev := range r.evs {
		if ev.SA != ids[i] || ev.ReqID != uint32(i) {
			t.Errorf("expiry %d: %v reqid %d, want %v reqid %d", i, ev.SA, ev.ReqID, ids[i], i)
		}
	}
}

// TestStamps: a time reads back from its stamp as an Equal time, with a
// monotonic clock reading if and only if it had one (so it compares with
// clk.Now() as before), on the real clock whose epoch has one.
func TestStamps(t *testing.T) {
	m := newLifeManager(clock.Real(), nil)
	epoch, now := m.epoch[stampMono], time.Now()
	tests := []struct {
		name string
		in   time.Time
		want time.Time // zero: in
		mono bool      // read back with a monotonic reading
	}{
		{name: "zero stays zero"},
		{name: "now", in: now, mono: true},
		{name: "the epoch", in: epoch, mono: true},
		{name: "before the epoch", in: epoch.Add(-time.Hour), mono: true},
		{name: "wall clock only", in: now.Round(0).Add(time.Minute)},
		{name: "wall clock only, before the epoch, UTC", in: time.Date(1970, 1, 1, 0, 0, 1, 5, time.UTC)},
		{name: "over 292 years before: 292 years before", in: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
			want: epoch.Round(0).Add(math.MinInt64)},
	}
	for _, tt := range tests {
		want := tt.want
		if want.IsZero() {
			want = tt.in
		}
		got := m.timeOf(m.stampOf(tt.in))
		if !got.Equal(want) || got.IsZero() != want.IsZero() {
			t.Errorf("%s: %v read back as %v, want %v", tt.name, tt.in, got, want)
		}
		if mono := got != got.Round(0); mono != tt.mono {
			t.Errorf("%s: read back with a monotonic reading %v, want %v", tt.name, mono, tt.mono)
		}
	}
}
