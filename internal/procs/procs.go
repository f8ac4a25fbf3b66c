// Package procs sets GOMAXPROCS to what the process's CPU load needs,
// between one and the number the runtime chose at start.
//
// Go's scheduler keeps GOMAXPROCS Ps; whenever one runs out of work its
// thread spins looking for more before it sleeps, and a goroutine made
// ready wakes an idle P's thread. An IKE daemon's load comes in short
// pieces (a datagram, a key exchange), so with idle Ps it pays that
// spinning and the cross-CPU wake-ups on nearly every datagram: on this
// project's 2-CPU machines a keyplane responder at about three quarters
// of one CPU used 15–19 % less CPU per handshake with GOMAXPROCS=1 than
// with 2, at the same handshakes/s (README, Measured, stop 31; Adapt's own
// figures are there under stop 33). Adapt starts at one P and doubles the
// Ps while the load fills them, so a burst still gets every CPU.
//
// What it costs is memory: with an idle P the runtime marks the heap
// early in a GC cycle, with one P the marking takes the cycle's whole
// runway and the heap peaks higher (at 100,000 tunnels, gctrace: 733 MB
// at the last cycle's end against 704 MB, goals 730 and 738 MB), and a
// responder's RSS per tunnel was 5–10 % higher.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Policy is when Adapt changes the number of Ps. Default is the one the
// daemon uses.
type Policy struct {
	// Interval is how often the process's CPU time is read.
	Interval time.Duration
	// RaiseAfter samples whose mean load (CPUs busy) is above
	// Raise × Ps double the Ps, up to the most.
	Raise      float64
	RaiseAfter int
	// LowerAfter samples whose mean load is below Lower × (Ps − 1) take
	// one P away. Two Ps cost more CPU than one for the same work, so a
	// load just under one P's worth measures above it with two: Lower
	// may be close to Raise without the count going back and forth.
	Lower      float64
	LowerAfter int
}

// Default raises after half a second above 90 % of the Ps and lowers
// after two seconds under 80 % of one P fewer.
var Default = Policy{Interval: 100 * time.Millisecond, Raise: 0.9, RaiseAfter: 5, Lower: 0.8, LowerAfter: 20}

// Next is the number of Ps after n (1 ≤ n ≤ most), given the mean load
// over the last RaiseAfter samples (raise) and over the last LowerAfter
// samples (lower); raiseOK and lowerOK say whether that many samples
// were taken since the last change.
func (p Policy) Next(n, most int, raise float64, raiseOK bool, lower float64, lowerOK bool) int {
	switch {
	case raiseOK && n < most && raise > p.Raise*float64(n):
		return min(most, 2*n)
	case lowerOK && n > 1 && lower < p.Lower*float64(n-1):
		return n - 1
	}
	return n
}

var (
	// initial is GOMAXPROCS as the runtime set it at start (the CPUs the
	// process may use), read before any Adapt changed it.
	initial = sync.OnceValue(func() int { return runtime.GOMAXPROCS(0) })
	// running: GOMAXPROCS is one per process, so is its Adapt.
	running atomic.Bool
)

// Adapt runs until ctx ends, setting GOMAXPROCS between one and what the
// runtime chose at start, by p, from the process's CPU time; it starts at
// one and puts the runtime's number back when it returns. It returns at
// once, changing nothing, where the CPU time cannot be read (see
// cpuTime), when the runtime chose one, or while another Adapt runs in
// the process. onChange, when not nil, is called with each number set.
func Adapt(ctx context.Context, p Policy, log *slog.Logger, onChange func(int)) {
	adapt(ctx, initial(), p, log, onChange, cpuTime)
}

// adapt is Adapt between one and most Ps, reading the CPU time from cpu.
func adapt(ctx context.Context, most int, p Policy, log *slog.Logger, onChange func(int), cpu func() (time.Duration, bool)) {
	last, ok := cpu()
	if !ok || most < 2 || !running.CompareAndSwap(false, true) {
		return
	}
	defer running.Store(false)
	set := func(n int) {
		runtime.GOMAXPROCS(n)
		if onChange != nil {
			onChange(n)
		}
	}
	n := 1
	set(n)
	defer set(most)
	window := max(p.RaiseAfter, p.LowerAfter)
	loads := make([]float64, 0, window) // since the last change, newest last
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	prev := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c, _ := cpu()
			load := 0.0
			if wall := now.Sub(prev); wall > 0 {
				load = float64(c-last) / float64(wall)
			}
			last, prev = c, now
			if len(loads) == window {
				copy(loads, loads[1:])
				loads = loads[:window-1]
			}
			loads = append(loads, load)
			next := p.Next(n, most, mean(loads, p.RaiseAfter), len(loads) >= p.RaiseAfter,
				mean(loads, p.LowerAfter), len(loads) >= p.LowerAfter)
			if next != n {
				log.Debug("GOMAXPROCS changed", "from", n, "to", next, "load", load)
				n = next
				set(n)
				loads = loads[:0]
			}
		}
	}
}

// mean is the mean of the last k of xs (of all of them when fewer).
func mean(xs []float64, k int) float64 {
	k = min(k, len(xs))
	if k == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs[len(xs)-k:] {
		s += x
	}
	return s / float64(k)
}
