package conformance

import (
	"errors"
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
)

// testDumpManySAs: 10,000 SAs install (batched where the backend can),
// stream back completely, stop early without trouble, and flush.
func testDumpManySAs(t TB, h *Harness) {
	sad := sadOf(t, h)
	ctx := t.Context()
	n := h.bulkN(10000)
	reqid := nextReqID()
	ops := make([]kernelops.Op, n)
	for i := range ops {
		ops[i] = kernelops.Op{Kind: kernelops.OpAddSA, SA: h.outSA(reqid)}
	}
	noErr(t, "install", kernelops.Apply(ctx, h.Backend, ops))
	seen := map[uint32]bool{}
	for e, err := range sad.SAs(ctx) {
		noErr(t, "dump", err)
		if e.ReqID == reqid {
			if seen[e.ID.SPI] {
				t.Fatalf("dump yields SPI %#x twice", e.ID.SPI)
			}
			seen[e.ID.SPI] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("dump shows %d of %d SAs", len(seen), n)
	}
	stopped := 0
	for _, err := range sad.SAs(ctx) {
		noErr(t, "dump", err)
		if stopped++; stopped == 10 {
			break
		}
	}
	noErr(t, "flush", sad.FlushSAs(ctx))
	for e, err := range sad.SAs(ctx) {
		noErr(t, "dump after flush", err)
		if e.ReqID == reqid {
			t.Fatalf("SA %s survived the flush", e.ID)
		}
	}
}

func bulkSelector(h *Harness, i int) kernelops.Selector {
	var src netip.Addr
	if h.LocalInner.Is4() {
		src = netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)})
	} else {
		a := h.LocalInner.As16()
		a[12], a[13], a[14], a[15] = 0x64, byte(i>>16), byte(i>>8), byte(i)
		src = netip.AddrFrom16(a)
	}
	return kernelops.Selector{Src: host(src), Dst: host(h.RemoteInner)}
}

func testDumpManyPolicies(t TB, h *Harness) {
	spd := spdOf(t, h)
	ctx := t.Context()
	n := h.bulkN(10000)
	reqid := nextReqID()
	ops := make([]kernelops.Op, n)
	for i := range ops {
		p := h.outPolicy(kernelops.ActionIPsec, reqid)
		p.Selector = bulkSelector(h, i)
		ops[i] = kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: p}
	}
	noErr(t, "install", kernelops.Apply(ctx, h.Backend, ops))
	seen := map[kernelops.Selector]bool{}
	for e, err := range spd.Policies(ctx) {
		noErr(t, "dump", err)
		if len(e.Templates) == 1 && e.Templates[0].ReqID == reqid {
			seen[e.Selector] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("dump shows %d of %d policies", len(seen), n)
	}
	noErr(t, "flush", spd.FlushPolicies(ctx))
	for e, err := range spd.Policies(ctx) {
		noErr(t, "dump after flush", err)
		if len(e.Templates) == 1 && e.Templates[0].ReqID == reqid {
			t.Fatalf("policy %s survived the flush", e.ID())
		}
	}
}

// testBatchPartialFailure: one bad op fails alone; the rest apply.
func testBatchPartialFailure(t TB, h *Harness) {
	facet[kernelops.Batcher](t, h, kernelops.CapBatch)
	sad := sadOf(t, h)
	ctx := t.Context()
	a, b := h.outSA(nextReqID()), h.outSA(nextReqID())
	ops := []kernelops.Op{
		{Kind: kernelops.OpAddSA, SA: a},
		{Kind: kernelops.OpAddSA, SA: a.Clone()},
		{Kind: kernelops.OpAddSA, SA: b},
		{Kind: kernelops.OpDeleteSA, SAID: h.outSA(1).ID},
	}
	err := kernelops.Apply(ctx, h.Backend, ops)
	var be *kernelops.BatchError
	if !errors.As(err, &be) || be.Failed != 2 || be.Total != 4 {
		t.Fatalf("batch error %v, want 2 of 4 failed", err)
	}
	if ops[0].Err != nil || ops[2].Err != nil {
		t.Errorf("good ops failed: %v, %v", ops[0].Err, ops[2].Err)
	}
	wantErr(t, "duplicate add in batch", ops[1].Err, kernelops.ErrExists)
	wantErr(t, "delete of a missing SA in batch", ops[3].Err, kernelops.ErrNotFound)
	for _, id := range []kernelops.SAID{a.ID, b.ID} {
		if _, err := sad.GetSA(ctx, id); err != nil {
			t.Errorf("batched SA %s missing: %v", id, err)
		}
	}
}
