package kernelops

import (
	"context"
	"errors"
	"iter"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/keyplane/keyplane/kernelops/clock"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func testSAID(spi uint32) SAID {
	return SAID{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"),
		SPI: spi, Proto: ProtoESP}
}

// usageTable is a test double of a dataplane's usage counters. lastUsed says
// whether it fills Usage.LastUsed (on every packet) or leaves it zero.
type usageTable struct {
	mu       sync.Mutex
	clk      *clock.Fake
	lastUsed bool
	sas      map[SAID]*Usage
	reads    int
	fail     error
}

func newTable(clk *clock.Fake, lastUsed bool) *usageTable {
	return &usageTable{clk: clk, lastUsed: lastUsed, sas: map[SAID]*Usage{}}
}

func (tb *usageTable) add(id SAID) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.sas[id] = &Usage{ID: id, ReqID: 9, AddTime: tb.clk.Now()}
}

func (tb *usageTable) del(id SAID) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	delete(tb.sas, id)
}

func (tb *usageTable) send(id SAID) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	u := tb.sas[id]
	u.Bytes += 100
	u.Packets++
	if tb.lastUsed {
		u.LastUsed = tb.clk.Now()
	}
}

func (tb *usageTable) read(ctx context.Context) iter.Seq2[Usage, error] {
	return func(yield func(Usage, error) bool) {
		tb.mu.Lock()
		tb.reads++
		if tb.fail != nil {
			tb.mu.Unlock()
			yield(Usage{}, tb.fail)
			return
		}
		snap := make([]Usage, 0, len(tb.sas))
		for _, u := range tb.sas {
			snap = append(snap, *u)
		}
		tb.mu.Unlock()
		for _, u := range snap {
			if !yield(u, nil) {
				return
			}
		}
	}
}

type sink struct {
	mu  sync.Mutex
	evs []IdleEvent
}

func (s *sink) emit(ev *IdleEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, *ev)
}

func (s *sink) take() []IdleEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.evs
	s.evs = nil
	return out
}

func TestIdle(t *testing.T) {
	for _, lastUsed := range []bool{true, false} {
		name := "counter-deltas"
		if lastUsed {
			name = "last-used"
		}
		t.Run(name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			tb := newTable(clk, lastUsed)
			var s sink
			d := newIdleDetector(idleConfig{Clock: clk, Read: tb.read, Emit: s.emit})
			ctx := t.Context()
			a, b := testSAID(0x100), testSAID(0x200)
			tb.add(a)
			tb.add(b)
			d.Watch(a, 30*time.Second)
			d.Watch(b, 30*time.Second)

			scan := func(after time.Duration) []IdleEvent {
				t.Helper()
				clk.Advance(after)
				if err := d.Scan(ctx); err != nil {
					t.Fatal(err)
				}
				return s.take()
			}
			tb.send(a)
			if evs := scan(10 * time.Second); len(evs) != 0 {
				t.Fatalf("at 10s: %+v, want nothing", evs)
			}
			// b never carried traffic: idle since it was added. a was used
			// at 0s: with LastUsed it is idle at 30s too; with deltas its
			// activity counts from the first scan (10s): idle at 40s.
			evs := scan(20 * time.Second)
			var gotA bool
			for _, ev := range evs {
				switch ev.SA {
				case b:
					if !ev.LastUsed.IsZero() || ev.IdleFor != 30*time.Second || ev.ReqID != 9 {
						t.Errorf("at 30s: %+v, want b idle 30s, never used, reqid 9", ev)
					}
				case a:
					gotA = true
					if !lastUsed || ev.IdleFor != 30*time.Second || !ev.LastUsed.Equal(t0) {
						t.Errorf("at 30s: %+v, want a idle 30s from LastUsed only with LastUsed", ev)
					}
				}
			}
			if len(evs) != 1+btoi(lastUsed) || gotA != lastUsed {
				t.Fatalf("at 30s: %+v", evs)
			}
			evs = scan(10 * time.Second)
			if lastUsed != (len(evs) == 0) {
				t.Fatalf("at 40s: %+v", evs)
			}
			if !lastUsed && (evs[0].SA != a || evs[0].IdleFor != 30*time.Second || !evs[0].LastUsed.Equal(t0.Add(10*time.Second))) {
				t.Fatalf("at 40s: %+v, want a idle 30s since the 10s scan", evs)
			}
			// Once per idle period.
			if evs := scan(time.Hour); len(evs) != 0 {
				t.Fatalf("later scan: %+v, want no repeat", evs)
			}
			// Traffic resumes and stops: a new idle period.
			tb.send(a)
			if evs := scan(10 * time.Second); len(evs) != 0 {
				t.Fatalf("right after traffic: %+v", evs)
			}
			evs = scan(30 * time.Second)
			if len(evs) != 1 || evs[0].SA != a || evs[0].LastUsed.IsZero() {
				t.Fatalf("after resumed traffic stopped: %+v, want a idle again with LastUsed", evs)
			}
		})
	}
}

// TestFirstUseLastUsed: a dataplane whose LastUsed is the first use only
// (XFRM before 6.2) must not make a busy SA look idle.
func TestFirstUseLastUsed(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := newTable(clk, true)
	d := newIdleDetector(idleConfig{Clock: clk, Read: tb.read, Emit: func(ev *IdleEvent) { t.Errorf("busy SA reported idle: %+v", ev) }})
	a := testSAID(0x100)
	tb.add(a)
	tb.send(a) // LastUsed = t0 and then frozen
	tb.lastUsed = false
	d.Watch(a, 30*time.Second)
	for range 10 {
		clk.Advance(20 * time.Second)
		tb.send(a)
		if err := d.Scan(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestThresholdChangeAndUnwatch(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := newTable(clk, true)
	var s sink
	d := newIdleDetector(idleConfig{Clock: clk, Read: tb.read, Emit: s.emit})
	a := testSAID(0x100)
	tb.add(a)
	d.Watch(a, time.Minute)
	clk.Advance(time.Minute)
	d.Scan(t.Context())
	if len(s.take()) != 1 {
		t.Fatal("no idle event at the threshold")
	}
	d.Watch(a, 2*time.Minute)
	if d.Threshold(a) != 2*time.Minute {
		t.Fatalf("threshold %v, want 2m", d.Threshold(a))
	}
	d.Scan(t.Context())
	if len(s.take()) != 0 {
		t.Fatal("reported before the new threshold")
	}
	clk.Advance(time.Minute)
	d.Scan(t.Context())
	if len(s.take()) != 1 {
		t.Fatal("no report at the new threshold")
	}
	d.Watch(a, 0)
	if d.Len() != 0 {
		t.Fatalf("watching %d after threshold 0", d.Len())
	}
	reads := tb.reads
	d.Scan(t.Context())
	if tb.reads != reads {
		t.Error("a scan with nothing idleWatched read usage")
	}
}

func TestGoneSAForgotten(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := newTable(clk, true)
	d := newIdleDetector(idleConfig{Clock: clk, Read: tb.read})
	a, b := testSAID(0x100), testSAID(0x200)
	tb.add(a)
	tb.add(b)
	d.Watch(a, time.Minute)
	d.Watch(b, time.Minute)
	tb.del(a)
	if err := d.Scan(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d.Threshold(a) != 0 || d.Threshold(b) == 0 {
		t.Fatalf("after a scan without a: watching a=%v b=%v; want a forgotten, b kept", d.Threshold(a), d.Threshold(b))
	}
	// A failed read forgets nothing.
	tb.fail = errors.New("dump interrupted")
	tb.del(b)
	if err := d.Scan(t.Context()); err == nil {
		t.Fatal("scan with a failing read returned nil")
	}
	if d.Threshold(b) == 0 {
		t.Fatal("a failed scan forgot b")
	}
}

func TestMove(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := newTable(clk, true)
	var s sink
	d := newIdleDetector(idleConfig{Clock: clk, Read: tb.read, Emit: s.emit})
	a, moved := testSAID(0x100), testSAID(0x100)
	moved.Src = netip.MustParseAddr("203.0.113.5")
	d.Watch(a, time.Minute)
	if !d.Move(a, moved) || d.Move(a, moved) {
		t.Fatal("Move: want true for a idleWatched id, then false")
	}
	tb.add(moved)
	clk.Advance(time.Minute)
	d.Scan(t.Context())
	if evs := s.take(); len(evs) != 1 || evs[0].SA != moved {
		t.Fatalf("events %+v, want one for the moved id", evs)
	}
}

func TestStartOnClock(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := newTable(clk, true)
	var s sink
	var errs []error
	d := newIdleDetector(idleConfig{Clock: clk, Read: tb.read, Emit: s.emit, OnError: func(err error) { errs = append(errs, err) }})
	stop := d.Start(10 * time.Second)
	if clk.Pending() != 0 {
		t.Fatal("timer armed with nothing idleWatched")
	}
	a := testSAID(0x100)
	tb.add(a)
	d.Watch(a, 25*time.Second)
	if clk.Pending() != 1 {
		t.Fatalf("pending timers %d, want 1", clk.Pending())
	}
	clk.Advance(20 * time.Second)
	if len(s.take()) != 0 {
		t.Fatal("idle before the threshold")
	}
	clk.Advance(10 * time.Second) // scan at 30s
	if evs := s.take(); len(evs) != 1 {
		t.Fatalf("after 30s on the clock: %d events, want 1", len(evs))
	}
	tb.fail = errors.New("boom")
	clk.Advance(10 * time.Second)
	if len(errs) != 1 {
		t.Fatalf("OnError got %v, want one error", errs)
	}
	tb.fail = nil
	d.Watch(a, 0)
	clk.Advance(10 * time.Second) // last tick finds nothing idleWatched
	if clk.Pending() != 0 {
		t.Fatalf("timer still armed with nothing idleWatched (%d)", clk.Pending())
	}
	d.Watch(a, time.Second)
	stop()
	stop()
	if clk.Pending() != 0 {
		t.Fatalf("timer armed after stop (%d)", clk.Pending())
	}
}

func TestRunRealClock(t *testing.T) {
	tbClk := clock.NewFake(t0) // the usageTable's own times do not matter here
	tb := newTable(tbClk, false)
	a := testSAID(0x100)
	tb.add(a)
	got := make(chan *IdleEvent, 1)
	d := newIdleDetector(idleConfig{Read: tb.read, Emit: func(ev *IdleEvent) {
		select {
		case got <- ev:
		default:
		}
	}})
	d.Watch(a, time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.Run(ctx, 5*time.Millisecond) }()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no idle event from Run on the real clock")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
