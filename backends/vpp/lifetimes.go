//go:build vpp

package vpp

import (
	"context"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// VPP enforces no lifetimes, so the kernelops front end does (the driver
// claims CapSoftwareLifetimes): time limits on the backend's clock, byte
// and packet limits checked at every stats read, whose counters reach the
// front end through Env.Observe once b.mu is released (flushObs). An
// expiry is handled like a kernel's: the soft one marks the SA dying, the
// hard one deletes the SA from VPP, and then the front end publishes it.

// observation is one SA's counters from a stats read, for Env.Observe.
type observation struct {
	id             kernelops.SAID
	bytes, packets uint64
	firstUse       time.Time
}

// queueObs queues the counters of every owned SA that carried traffic.
// b.mu is held.
func (b *driver) queueObs() {
	for _, r := range b.sas {
		t := r.total()
		if t.Packets > 0 || t.Bytes > 0 {
			b.pendingObs = append(b.pendingObs, observation{r.sa.ID, t.Bytes, t.Packets, r.firstUse})
		}
	}
}

// flushObs hands the queued counters to the front end. b.mu is not held:
// an expiry it decides calls Expire, which takes it.
func (b *driver) flushObs() {
	b.mu.Lock()
	obs := b.pendingObs
	b.pendingObs = nil
	b.mu.Unlock()
	for _, o := range obs {
		b.env.Observe(o.id, o.bytes, o.packets, o.firstUse)
	}
}

// Expire implements kernelops.Expirer.
func (b *driver) Expire(ctx context.Context, ev *kernelops.ExpireEvent) bool {
	if !ev.Hard {
		b.mu.Lock()
		defer b.mu.Unlock()
		r := b.sas[ev.SA]
		if r != nil {
			r.state = kernelops.SADying
		}
		return r != nil
	}
	s, err := b.lockSession(ctx)
	if err != nil {
		// VPP is away. Forget the SA; its sad_id stays issued, so the
		// reconcile after the reconnect deletes it from VPP.
		b.mu.Lock()
		defer b.mu.Unlock()
		r := b.sas[ev.SA]
		if r != nil {
			delete(b.sas, r.sa.ID)
			delete(b.bySadID, r.sadID)
			b.issued[r.sadID] = true
		}
		return r != nil
	}
	defer b.mu.Unlock()
	r := b.sas[ev.SA]
	if r == nil {
		return false // deleted meanwhile: no expiry to report
	}
	r.state = kernelops.SADead
	if err := b.removeLocked(ctx, s, r); err != nil && r == b.sas[ev.SA] {
		b.log.Warn("hard expiry: deleting the SA from VPP failed; it is forgotten and removed after the next reconnect",
			"sa", ev.SA, "err", err)
		delete(b.sas, r.sa.ID)
		delete(b.bySadID, r.sadID)
		b.issued[r.sadID] = true
	}
	return true
}
