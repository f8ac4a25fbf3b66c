//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/idle"
)

// Idle detection with the shared detector (kernelops/idle): while some SA
// is watched, every Options.IdleScanInterval one SADB_DUMP reads every
// SA's counters. PF_KEY has no last-used time, so idleness comes from
// byte and packet counts that stopped moving between scans.

func (b *Backend) startIdle() {
	b.idle = idle.New(idle.Config{
		Clock: b.opts.Clock,
		Read:  idle.FromBackend(b),
		Emit:  func(ev *kernelops.IdleEvent) { b.bus.Publish(ev) },
		OnError: func(err error) {
			if b.checkOpen("idle scan") == nil {
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
	if err := b.checkSAID(op, id); err != nil {
		return err
	}
	if err := b.require(op, kernelops.CapIdle); err != nil {
		return err
	}
	if threshold < 0 {
		return kernelops.Invalid(Name, op, id.String(), "threshold", "negative threshold %v", threshold)
	}
	if threshold > 0 {
		e, err := b.getSA(ctx, op, id)
		if err != nil {
			return err
		}
		if e.State == kernelops.SALarval {
			return &kernelops.Error{Backend: Name, Op: op, Object: id.String(), Err: kernelops.ErrNotFound,
				Detail: "the SA is only reserved (AllocSPI)"}
		}
	}
	b.idle.Watch(id, threshold)
	return nil
}
