// Package addrref reference-counts the addresses keyplane adds to
// interfaces, so two connections sharing an address don't remove it from
// under each other, and an address keyplane found already configured is
// never removed by keyplane.
package addrref

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/keyplane/keyplane/kernelops"
)

// Dataplane is what a backend provides to add and remove an address for
// real.
type Dataplane interface {
	HasAddress(ctx context.Context, ifname string, p netip.Prefix) (bool, error)
	AddAddress(ctx context.Context, ifname string, p netip.Prefix) error
	DeleteAddress(ctx context.Context, ifname string, p netip.Prefix) error
}

type key struct {
	ifname string
	p      netip.Prefix
}

type entry struct {
	refs  int
	found bool // present before our first add: never ours to delete
}

// Table counts references. It is safe for concurrent use; dataplane calls
// run under its lock so two first-adds cannot race.
type Table struct {
	mu sync.Mutex
	dp Dataplane
	m  map[key]*entry
}

// New returns a table over dp.
func New(dp Dataplane) *Table { return &Table{dp: dp, m: map[key]*entry{}} }

// Add takes a reference, adding the address to the interface on the first.
func (t *Table) Add(ctx context.Context, ifname string, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("address %s on %q: %w", p, ifname, kernelops.ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := key{ifname, p}
	if e, ok := t.m[k]; ok {
		e.refs++
		return nil
	}
	has, err := t.dp.HasAddress(ctx, ifname, p)
	if err != nil {
		return err
	}
	if !has {
		if err := t.dp.AddAddress(ctx, ifname, p); err != nil {
			return err
		}
	}
	t.m[k] = &entry{refs: 1, found: has}
	return nil
}

// Remove drops a reference, deleting the address at the last one unless it
// was there before keyplane. Removing an address keyplane holds no
// reference to fails with ErrNotFound.
func (t *Table) Remove(ctx context.Context, ifname string, p netip.Prefix) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := key{ifname, p}
	e, ok := t.m[k]
	if !ok {
		return fmt.Errorf("address %s on %q: keyplane holds no reference: %w", p, ifname, kernelops.ErrNotFound)
	}
	if e.refs > 1 {
		e.refs--
		return nil
	}
	if !e.found {
		if err := t.dp.DeleteAddress(ctx, ifname, p); err != nil {
			return err
		}
	}
	delete(t.m, k)
	return nil
}

// Refs reports the references held on an address.
func (t *Table) Refs(ifname string, p netip.Prefix) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[key{ifname, p}]; ok {
		return e.refs
	}
	return 0
}
