package nokernel

import (
	"context"

	"github.com/keyplane/keyplane/kernelops"
)

// Expire applies a software lifetime the front end enforces for the
// model (kernelops.Expirer): a soft expiry marks the SA dying, a hard one
// removes it; the front end then publishes it, as XFRM sends
// XFRM_MSG_EXPIRE. An expiry decided for an SA deleted meanwhile is
// dropped.
func (b *model) Expire(_ context.Context, ev *kernelops.ExpireEvent) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	e := b.sad.find(ev.SA)
	if e == nil || e.state == kernelops.SALarval {
		return false
	}
	if ev.Hard {
		e.state = kernelops.SADead
		b.removeLocked(e)
	} else if e.state == kernelops.SAValid {
		e.state = kernelops.SADying
	}
	return true
}
