//go:build vpp

package vpp

import (
	"context"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// WatchIdle raises IdleEvents for an SA without traffic for threshold,
// found by kernelops/idle from one stats-segment read per scan
// (Options.IdleScanInterval). A threshold of 0 stops watching.
func (b *Backend) WatchIdle(ctx context.Context, id kernelops.SAID, threshold time.Duration) error {
	const op = "watch idle"
	if err := kernelops.ValidateSAID(Name, op, id); err != nil {
		return err
	}
	if threshold < 0 {
		return kernelops.Invalid(Name, op, id.String(), "threshold", "negative threshold %v", threshold)
	}
	if err := b.caps.Require(Name, op, kernelops.CapIdle); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return &kernelops.Error{Backend: Name, Op: op, Object: id.String(), Err: err}
	}
	b.mu.Lock()
	owned := b.sas[id] != nil
	b.mu.Unlock()
	if threshold > 0 && !owned {
		return &kernelops.Error{Backend: Name, Op: op, Object: id.String(), Err: kernelops.ErrNotFound}
	}
	b.idle.Watch(id, threshold)
	return nil
}
