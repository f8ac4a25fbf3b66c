//go:build vpp

package vpp

import (
	"context"
	"iter"

	"github.com/keyplane/keyplane/kernelops"
)

// readCounters reads every SA counter from the stats segment in one pass.
// It does not hold b.mu: the segment is shared memory, not the API.
func (b *driver) readCounters() ([]Counter, error) {
	b.mu.Lock()
	s := b.sess
	b.mu.Unlock()
	if s == nil {
		return nil, errConnLost
	}
	if s.stats == nil {
		return nil, kernelops.NotSupported(Name, "read counters", "stats-socket=none: counters are off")
	}
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if s.isDead() { // closed, or closing: its segment is (about to be) unmapped
		return nil, errConnLost
	}
	return s.stats.SACounters()
}

// observeLocked folds a counter read into the owned SAs: a counter that
// moved since the previous read means the SA carried traffic between the
// two reads, so last-used becomes the time of this read (and first-use,
// the first time it moves). VPP keeps no such times itself. b.mu is held.
func (b *driver) observeLocked(counters []Counter) {
	now := b.clock.Now()
	b.usageAt = now
	for _, r := range b.sas {
		if int(r.statIndex) >= len(counters) {
			continue
		}
		c := counters[r.statIndex]
		if c == r.last {
			continue
		}
		if c.Packets < r.last.Packets || c.Bytes < r.last.Bytes {
			// The slot was reset under us (VPP restarted and reused it
			// before the reconnect noticed): count from zero again.
			r.base = r.total()
		}
		r.last = c
		if r.total().Packets > 0 {
			if r.firstUse.IsZero() {
				r.firstUse = now
			}
			r.lastUsed = now
		}
	}
	b.queueObs()
}

// scanUsage is the periodic bulk read (every Options.IdleScanInterval)
// that keeps last-used current and drives byte/packet lifetimes.
func (b *driver) scanUsage() {
	counters, err := b.readCounters()
	if err != nil {
		return
	}
	b.mu.Lock()
	if !b.closed {
		b.observeLocked(counters)
	}
	b.mu.Unlock()
	b.flushObs()
}

// Usage streams the usage of every SA keyplane owns from one read of the
// stats segment: the cheap bulk read idle detection scans with.
func (b *driver) Usage(ctx context.Context) iter.Seq2[kernelops.Usage, error] {
	return func(yield func(kernelops.Usage, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(kernelops.Usage{}, err)
			return
		}
		counters, err := b.readCounters()
		if err != nil {
			yield(kernelops.Usage{}, wrap("", err, nil))
			return
		}
		b.mu.Lock()
		b.observeLocked(counters)
		out := make([]kernelops.Usage, 0, len(b.sas))
		for _, r := range b.sas {
			t := r.total()
			out = append(out, kernelops.Usage{ID: r.sa.ID, ReqID: r.sa.ReqID, Bytes: t.Bytes, Packets: t.Packets,
				AddTime: r.addTime, LastUsed: r.lastUsed})
		}
		b.mu.Unlock()
		b.flushObs()
		for _, u := range out {
			if !yield(u, nil) {
				return
			}
		}
	}
}
