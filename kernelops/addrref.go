package kernelops

// Address reference counts, for the AddrManager the front end builds over
// a driver's InterfaceAddrs: two connections sharing an address don't
// remove it from under each other, and an address found already
// configured is never removed by keyplane.

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
)

type addrKey struct {
	ifname string
	p      netip.Prefix
}

type addrEntry struct {
	refs  int
	found bool // present before our first add: never ours to delete
}

// addrTable counts references. It is safe for concurrent use; dataplane calls
// run under its lock so two first-adds cannot race.
type addrTable struct {
	mu sync.Mutex
	dp InterfaceAddrs
	m  map[addrKey]*addrEntry
}

// newAddrTable returns a table over dp.
func newAddrTable(dp InterfaceAddrs) *addrTable {
	return &addrTable{dp: dp, m: map[addrKey]*addrEntry{}}
}

// Add takes a reference, adding the address to the interface on the first.
func (t *addrTable) Add(ctx context.Context, ifname string, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("address %s on %q: %w", p, ifname, ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := addrKey{ifname, p}
	if e, ok := t.m[k]; ok {
		e.refs++
		return nil
	}
	has, err := t.dp.HasAddress(ctx, ifname, p)
	if err != nil {
		return err
	}
	if !has {
		if err := t.dp.AssignAddress(ctx, ifname, p); err != nil {
			return err
		}
	}
	t.m[k] = &addrEntry{refs: 1, found: has}
	return nil
}

// Remove drops a reference, deleting the address at the last one unless it
// was there before keyplane. Removing an address keyplane holds no
// reference to fails with ErrNotFound.
func (t *addrTable) Remove(ctx context.Context, ifname string, p netip.Prefix) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := addrKey{ifname, p}
	e, ok := t.m[k]
	if !ok {
		return fmt.Errorf("address %s on %q: keyplane holds no reference: %w", p, ifname, ErrNotFound)
	}
	if e.refs > 1 {
		e.refs--
		return nil
	}
	if !e.found {
		if err := t.dp.UnassignAddress(ctx, ifname, p); err != nil {
			return err
		}
	}
	delete(t.m, k)
	return nil
}

// Refs reports the references held on an address.
func (t *addrTable) Refs(ifname string, p netip.Prefix) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[addrKey{ifname, p}]; ok {
		return e.refs
	}
	return 0
}
