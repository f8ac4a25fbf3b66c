package xfrm

import (
	"context"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/idle"
)

// Idle detection (kernelops/idle): every Options.IdleScanInterval, while
// some SA is watched, one SA dump reads every SA's counters (Usage) and the
// detector raises IdleEvents. XFRM has no idle callback and, before Linux
// 6.2, no last-used time: then idleness comes from byte and packet deltas
// between scans.

func (b *Backend) startIdle() {
	b.idle = idle.New(idle.Config{
		Clock: b.opts.Clock,
		Read:  b.Usage,
		Emit:  func(ev *kernelops.IdleEvent) { b.bus.Publish(ev) },
		OnError: func(err error) {
			if !b.closed.Load() {
				b.log.Warn("idle scan failed", "err", err)
			}
		},
	})
	b.stopIdle = b.idle.Start(b.opts.IdleScanInterval)
}

// WatchIdle implements kernelops.IdleWatcher; a threshold of 0 stops
// watching the SA.
func (b *Backend) WatchIdle(ctx context.Context, id kernelops.SAID, threshold time.Duration) error {
	const op = "watch idle"
	if err := kernelops.ValidateSAID(Name, op, id); err != nil {
		return err
	}
	if err := b.checkOpen(op); err != nil {
		return err
	}
	if err := b.caps.Require(Name, op, kernelops.CapIdle); err != nil {
		return err
	}
	if threshold < 0 {
		return kernelops.Invalid(Name, op, id.String(), "threshold", "negative threshold %v", threshold)
	}
	if threshold > 0 {
		e, err := b.GetSA(ctx, id)
		if err != nil {
			return err
		}
		if e.State == kernelops.SALarval {
			return &kernelops.Error{Backend: Name, Op: op, Object: id.String(), Err: kernelops.ErrNotFound, Detail: "the SA is only reserved (AllocSPI)"}
		}
	}
	b.idle.Watch(id, threshold)
	return nil
}
