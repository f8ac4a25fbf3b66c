package kernelops

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

// memAddrs is a test double recording the adds and deletes a table makes.
type memAddrs struct {
	have          map[string]bool
	adds, deletes int
}

func (m *memAddrs) HasAddress(_ context.Context, ifn string, p netip.Prefix) (bool, error) {
	return m.have[ifn+p.String()], nil
}
func (m *memAddrs) AssignAddress(_ context.Context, ifn string, p netip.Prefix) error {
	m.have[ifn+p.String()] = true
	m.adds++
	return nil
}
func (m *memAddrs) UnassignAddress(_ context.Context, ifn string, p netip.Prefix) error {
	delete(m.have, ifn+p.String())
	m.deletes++
	return nil
}

func TestRefcounts(t *testing.T) {
	ctx := context.Background()
	dp := &memAddrs{have: map[string]bool{"eth0192.0.2.9/32": true}}
	tb := newAddrTable(dp)
	p := netip.MustParsePrefix("10.9.0.1/32")
	for range 2 {
		if err := tb.Add(ctx, "eth0", p); err != nil {
			t.Fatal(err)
		}
	}
	if dp.adds != 1 || tb.Refs("eth0", p) != 2 {
		t.Fatalf("adds %d refs %d", dp.adds, tb.Refs("eth0", p))
	}
	tb.Remove(ctx, "eth0", p)
	if !dp.have["eth010.9.0.1/32"] {
		t.Fatal("removed while still referenced")
	}
	tb.Remove(ctx, "eth0", p)
	if dp.have["eth010.9.0.1/32"] || dp.deletes != 1 {
		t.Fatal("not removed at last reference")
	}
	if err := tb.Remove(ctx, "eth0", p); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove without reference: %v", err)
	}
	// An address that was there first is never keyplane's to delete.
	pre := netip.MustParsePrefix("192.0.2.9/32")
	tb.Add(ctx, "eth0", pre)
	tb.Remove(ctx, "eth0", pre)
	if !dp.have["eth0192.0.2.9/32"] || dp.deletes != 1 {
		t.Fatal("pre-existing address was deleted")
	}
}
