//go:build vpp

package vpp

import (
	"context"
	"sync"

	"github.com/keyplane/keyplane/kernelops"
)

// VPP enforces no lifetimes, so keyplane does, with the shared
// kernelops/swlifetime Manager: time limits on the backend's clock, byte
// and packet limits checked at every stats read (observeLocked). An
// expiry is handled like a kernel's: the soft one marks the SA dying, the
// hard one deletes the SA from VPP, and then the ExpireEvent goes out.
//
// The Manager's Fire callback may run under b.mu (Add and Observe are
// called there), so it only queues; the expirer goroutine does the work.

// lifetimeAdded starts tracking an SA. b.mu is held.
func (b *driver) lifetimeAdded(r *saRec) {
	if r.sa.Lifetime != (kernelops.Lifetimes{}) {
		b.life.Add(r.sa.ID, r.sa.ReqID, r.sa.Lifetime, r.addTime)
	}
}

// lifetimeUpdated applies an SA's new limits, keeping what has fired.
func (b *driver) lifetimeUpdated(r *saRec) {
	if !b.life.Update(r.sa.ID, r.sa.Lifetime) {
		b.lifetimeAdded(r)
	}
}

func (b *driver) lifetimeRemoved(r *saRec) { b.life.Remove(r.sa.ID) }

// lifetimeObserved hands the counters of every owned SA to the Manager.
// b.mu is held.
func (b *driver) lifetimeObserved() {
	for _, r := range b.sas {
		t := r.total()
		if t.Packets > 0 || t.Bytes > 0 {
			b.life.Observe(r.sa.ID, t.Bytes, t.Packets, r.firstUse)
		}
	}
}

// expiryQueue hands expiries from the Manager to the expirer goroutine
// without ever blocking the Manager.
type expiryQueue struct {
	mu   sync.Mutex
	q    []*kernelops.ExpireEvent
	wake chan struct{}
}

func newExpiryQueue() *expiryQueue { return &expiryQueue{wake: make(chan struct{}, 1)} }

func (e *expiryQueue) push(ev *kernelops.ExpireEvent) {
	e.mu.Lock()
	e.q = append(e.q, ev)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *expiryQueue) take() []*kernelops.ExpireEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	q := e.q
	e.q = nil
	return q
}

// expirer applies expiries in the order the Manager decided them.
func (b *driver) expirer() {
	defer b.wg.Done()
	for {
		select {
		case <-b.closeCh:
			return
		case <-b.expiries.wake:
		}
		for _, ev := range b.expiries.take() {
			b.expire(ev)
		}
	}
}

func (b *driver) expire(ev *kernelops.ExpireEvent) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !ev.Hard {
		b.mu.Lock()
		r := b.sas[ev.SA]
		if r != nil {
			r.state = kernelops.SADying
		}
		b.mu.Unlock()
		if r != nil {
			b.env.Publish(ev)
		}
		return
	}
	s, err := b.lockSession(ctx)
	if err != nil {
		// VPP is away. Forget the SA; its sad_id stays issued, so the
		// reconcile after the reconnect deletes it from VPP.
		b.mu.Lock()
		r := b.sas[ev.SA]
		if r != nil {
			delete(b.sas, r.sa.ID)
			delete(b.bySadID, r.sadID)
			b.issued[r.sadID] = true
			if r.spiHeld {
				b.spis.Release(r.sa.ID.SPI)
			}
		}
		b.mu.Unlock()
		if r != nil {
			b.env.Publish(ev)
		}
		return
	}
	r := b.sas[ev.SA]
	if r == nil {
		b.mu.Unlock() // deleted meanwhile: no expiry to report
		return
	}
	r.state = kernelops.SADead
	if err := b.removeLocked(ctx, s, r); err != nil && r == b.sas[ev.SA] {
		b.log.Warn("hard expiry: deleting the SA from VPP failed; it is forgotten and removed after the next reconnect",
			"sa", ev.SA, "err", err)
		delete(b.sas, r.sa.ID)
		delete(b.bySadID, r.sadID)
		b.issued[r.sadID] = true
	}
	b.mu.Unlock()
	b.env.Publish(ev)
}
