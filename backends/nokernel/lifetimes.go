package nokernel

import "github.com/keyplane/keyplane/kernelops"

// onExpire is the swlifetime callback: a soft expiry marks the SA dying, a
// hard one removes it; either is published, as XFRM sends
// XFRM_MSG_EXPIRE. An expiry decided for an SA deleted meanwhile is
// dropped.
func (b *model) onExpire(ev *kernelops.ExpireEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	e := b.sad.find(ev.SA)
	if e == nil || e.state == kernelops.SALarval {
		return
	}
	if ev.Hard {
		e.state = kernelops.SADead
		b.removeLocked(e)
	} else if e.state == kernelops.SAValid {
		e.state = kernelops.SADying
	}
	b.env.Publish(ev)
}
