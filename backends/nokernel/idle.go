package nokernel

import (
	"context"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// WatchIdle sets an SA's idle threshold (IdleWatcher); 0 stops watching.
// The model scans every Options.IdleScanInterval with one bulk usage read
// (kernelops/idle) and raises an IdleEvent per idle period. LastUsed moves
// on every simulated packet, so idleness is exact to the scan interval.
func (b *Backend) WatchIdle(ctx context.Context, id kernelops.SAID, threshold time.Duration) error {
	const op = "watch idle"
	if err := kernelops.ValidateSAID(Name, op, id); err != nil {
		return err
	}
	if threshold < 0 {
		return kernelops.Invalid(Name, op, id.String(), "threshold", "negative threshold %v", threshold)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(ctx, op); err != nil {
		return err
	}
	if threshold > 0 {
		if e := b.sad.find(id); e == nil || e.state == kernelops.SALarval {
			return errno(op, id.String(), syscall.ESRCH, "no such SA")
		}
	}
	b.idle.Watch(id, threshold)
	return nil
}
