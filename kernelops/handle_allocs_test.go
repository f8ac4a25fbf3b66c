package kernelops_test

import (
	"context"
	"testing"

	"github.com/keyplane/keyplane/kernelops"
)

// nopBatcher is a test double whose Batcher accepts every op.
type nopBatcher struct{ *recDriver }

func (nopBatcher) Apply(_ context.Context, ops []kernelops.Op) error {
	for i := range ops {
		ops[i].Err = nil
	}
	return nil
}

// TestHandleApplyAllocations: the front end's part of a batch of valid SAs
// allocates per batch, not per SA (checks name nothing unless they fail,
// the ops are not copied when all pass).
func TestHandleApplyAllocations(t *testing.T) {
	d := nopBatcher{&recDriver{caps: kernelops.CapSAD | kernelops.CapTunnelMode | kernelops.CapBatch |
		kernelops.CapLifetimeTime | kernelops.CapLifetimeBytes | kernelops.CapLifetimePackets, sas: map[kernelops.SAID]bool{}}}
	h := open(t, d, nil)
	const n = 1000
	sas := make([]*kernelops.SA, n)
	for i := range sas {
		sas[i] = goodSA(0x4000 + uint32(i))
	}
	ops := make([]kernelops.Op, n)
	apply := func() {
		for i, sa := range sas {
			ops[i] = kernelops.Op{Kind: kernelops.OpAddSA, SA: sa}
		}
		if err := h.Apply(t.Context(), ops); err != nil {
			t.Fatal(err)
		}
	}
	apply() // the Handle's SPI table learns the SAs once
	if got := testing.AllocsPerRun(10, apply); got > 10 {
		t.Fatalf("a batch of %d valid SAs: %.0f allocations, want a few per batch", n, got)
	}
}
