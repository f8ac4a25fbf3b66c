package ha

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// Fencer decides whether this node may write to its dataplane now
// (*Elector is one).
type Fencer interface {
	Fence(ctx context.Context, op string) error
}

// Fenced is a dataplane handle whose writes that install or change
// state (SAs, SPIs, policies, batches, sync state, migrations, addresses)
// first pass the fence: a node that does not hold the leadership gets a
// *FenceError (errors.Is ErrNotLeader) and the dataplane is not touched.
// Removals (DeleteSA, DeletePolicy, flushes) pass unfenced: they can only
// stop traffic on this node, which a deposed leader must be able to do.
// Every other facet is the handle's own (the embedded *Handle).
type Fenced struct {
	*kernelops.Handle
	f Fencer
	// calls and took count the fence checks and the time they took
	// (a takeover reports them).
	calls, took atomic.Int64
}

func (b *Fenced) fence(ctx context.Context, op string) error {
	t := time.Now()
	err := b.f.Fence(ctx, op)
	b.took.Add(int64(time.Since(t)))
	b.calls.Add(1)
	return err
}

// FenceStats returns how many fence checks the writes made so far and
// the time they took.
func (b *Fenced) FenceStats() (calls int64, took time.Duration) {
	return b.calls.Load(), time.Duration(b.took.Load())
}

// NewFenced wraps the backend's handle (the *kernelops.Handle that
// kernelops.Open returns, or the one a backend type embeds).
func NewFenced(h *kernelops.Handle, f Fencer) *Fenced { return &Fenced{Handle: h, f: f} }

// AllocSPI implements kernelops.SAD.
func (b *Fenced) AllocSPI(ctx context.Context, req kernelops.SPIRequest) (uint32, error) {
	if err := b.fence(ctx, "allocate SPI"); err != nil {
		return 0, err
	}
	return b.Handle.AllocSPI(ctx, req)
}

// AddSA implements kernelops.SAD.
func (b *Fenced) AddSA(ctx context.Context, sa *kernelops.SA) error {
	if err := b.fence(ctx, "add SA "+sa.ID.String()); err != nil {
		return err
	}
	return b.Handle.AddSA(ctx, sa)
}

// UpdateSA implements kernelops.SAD.
func (b *Fenced) UpdateSA(ctx context.Context, sa *kernelops.SA) error {
	if err := b.fence(ctx, "update SA "+sa.ID.String()); err != nil {
		return err
	}
	return b.Handle.UpdateSA(ctx, sa)
}

// AddPolicy implements kernelops.SPD.
func (b *Fenced) AddPolicy(ctx context.Context, p *kernelops.Policy) error {
	if err := b.fence(ctx, "add policy "+p.ID().String()); err != nil {
		return err
	}
	return b.Handle.AddPolicy(ctx, p)
}

// ReplacePolicy implements kernelops.SPD.
func (b *Fenced) ReplacePolicy(ctx context.Context, p *kernelops.Policy) error {
	if err := b.fence(ctx, "replace policy "+p.ID().String()); err != nil {
		return err
	}
	return b.Handle.ReplacePolicy(ctx, p)
}

// Apply implements kernelops.Batcher: one fence check for the batch.
func (b *Fenced) Apply(ctx context.Context, ops []kernelops.Op) error {
	if err := b.fence(ctx, "apply batch"); err != nil {
		return err
	}
	return b.Handle.Apply(ctx, ops)
}

// SetSyncState implements kernelops.Syncer.
func (b *Fenced) SetSyncState(ctx context.Context, id kernelops.SAID, st kernelops.SyncState) error {
	if err := b.fence(ctx, "set sync state "+id.String()); err != nil {
		return err
	}
	return b.Handle.SetSyncState(ctx, id, st)
}

// Migrate implements kernelops.Migrator.
func (b *Fenced) Migrate(ctx context.Context, m kernelops.Migration) error {
	if err := b.fence(ctx, "migrate"); err != nil {
		return err
	}
	return b.Handle.Migrate(ctx, m)
}

// AddAddress implements kernelops.AddrManager (the VIP goes through it).
func (b *Fenced) AddAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	if err := b.fence(ctx, "add address "+p.String()); err != nil {
		return err
	}
	return b.Handle.AddAddress(ctx, ifname, p)
}
