package procs

import (
	"context"
	"io"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	p := Default
	for _, tc := range []struct {
		name    string
		n, most int
		raise   float64
		raiseOK bool
		lower   float64
		lowerOK bool
		want    int
	}{
		{"busy one P doubles", 1, 8, 0.95, true, 0.95, true, 2},
		{"busy four Ps double", 4, 8, 3.7, true, 3.7, true, 8},
		{"doubling stops at the most", 4, 6, 3.8, true, 3.8, true, 6},
		{"at the most stays", 8, 8, 7.9, true, 7.9, true, 8},
		{"too few samples to raise", 1, 8, 0.99, false, 0.99, false, 1},
		{"just under the raise line", 2, 8, 1.79, true, 1.79, true, 2},
		// Two Ps at 0.85 CPUs: one P would do (0.85 is not under 0.8 × 1 though).
		{"two Ps above the lower line stay", 2, 8, 0.85, true, 0.85, true, 2},
		{"two Ps under the lower line lose one", 2, 8, 0.5, true, 0.5, true, 1},
		{"too few samples to lower", 2, 8, 0.1, true, 0.1, false, 2},
		{"one P never goes lower", 1, 8, 0, true, 0, true, 1},
		{"eight Ps at five CPUs lose one", 8, 8, 5, true, 5, true, 7},
		{"a short burst over a quiet stretch raises", 2, 8, 1.9, true, 0.3, true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Next(tc.n, tc.most, tc.raise, tc.raiseOK, tc.lower, tc.lowerOK); got != tc.want {
				t.Errorf("Next(%d, most %d, raise %.2f/%v, lower %.2f/%v) = %d, want %d",
					tc.n, tc.most, tc.raise, tc.raiseOK, tc.lower, tc.lowerOK, got, tc.want)
			}
		})
	}
}

// fakeCPU is CPU time that grows at a load the test sets (CPUs busy),
// integrated over the wall clock.
type fakeCPU struct {
	mu    sync.Mutex
	load  float64
	at    time.Time
	total time.Duration
	fail  bool
}

func (f *fakeCPU) read() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if !f.at.IsZero() {
		f.total += time.Duration(f.load * float64(now.Sub(f.at)))
	}
	f.at = now
	return f.total, !f.fail
}

func (f *fakeCPU) setLoad(l float64) {
	f.read()
	f.mu.Lock()
	f.load = l
	f.mu.Unlock()
}

// Adapt follows the load up by doublings and down one P at a time, and
// puts the most back when it ends.
func TestAdaptFollowsLoad(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	p := Policy{Interval: 5 * time.Millisecond, Raise: 0.9, RaiseAfter: 3, Lower: 0.8, LowerAfter: 6}
	f := &fakeCPU{}
	set := make(chan int, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		adapt(ctx, 4, p, slog.New(slog.NewTextHandler(io.Discard, nil)), func(n int) { set <- n }, f.read)
	}()
	expect := func(want int) {
		t.Helper()
		select {
		case n := <-set:
			if n != want {
				t.Fatalf("GOMAXPROCS set to %d, want %d", n, want)
			}
			if got := runtime.GOMAXPROCS(0); got != want {
				t.Fatalf("runtime has GOMAXPROCS %d after %d was set", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("GOMAXPROCS not set to %d within 10 s", want)
		}
	}
	expect(1) // it starts at one
	f.setLoad(3.9)
	expect(2)
	expect(4)
	f.setLoad(0.5)
	expect(3)
	expect(2)
	expect(1)
	cancel()
	<-done
	expect(4) // the most, back
	select {
	case n := <-set:
		t.Fatalf("GOMAXPROCS set to %d after Adapt returned", n)
	default:
	}
}

// Adapt changes nothing where the CPU time cannot be read, and a second
// one in the process returns while the first runs.
func TestAdaptLeavesAlone(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := Policy{Interval: time.Millisecond, Raise: 0.9, RaiseAfter: 1, Lower: 0.8, LowerAfter: 1}
	called := func(n int) { t.Errorf("GOMAXPROCS set to %d", n) }

	adapt(t.Context(), 4, p, log, called, (&fakeCPU{fail: true}).read) // returns at once

	adapt(t.Context(), 1, p, log, called, (&fakeCPU{}).read) // one CPU: nothing to adapt

	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan int, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		adapt(ctx, 4, p, log, func(n int) { first <- n }, (&fakeCPU{}).read)
	}()
	<-first // running
	adapt(t.Context(), 4, p, log, called, (&fakeCPU{}).read)
	cancel()
	<-done
}

// cpuTime reads this process's CPU time: it grows by at least some of a
// busy loop's time.
func TestCPUTime(t *testing.T) {
	c0, ok := cpuTime()
	if !ok {
		t.Skip("no process CPU time on " + runtime.GOOS + ": Adapt leaves GOMAXPROCS alone here")
	}
	x := 1.0
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
		x = math.Sqrt(x + 1)
	}
	c1, _ := cpuTime()
	if d := c1 - c0; d < 20*time.Millisecond {
		t.Errorf("CPU time grew %v over a 200 ms busy loop (x=%v)", d, x)
	}
}
