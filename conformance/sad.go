package conformance

import (
	"fmt"
	"sync"

	"github.com/keyplane/keyplane/kernelops"
)

func sadOf(t TB, h *Harness) kernelops.SAD {
	return facet[kernelops.SAD](t, h, kernelops.CapSAD)
}

// testSPIAllocation: a requested range is respected and 1000 allocations
// are unique; the configured range applies when the request has none.
func testSPIAllocation(t TB, h *Harness) {
	sad := sadOf(t, h)
	ctx := t.Context()
	const lo, hi = 0xd0000000, 0xd000ffff
	seen := map[uint32]bool{}
	for i := range 1000 {
		spi, err := sad.AllocSPI(ctx, kernelops.SPIRequest{Src: h.Remote, Dst: h.Local,
			Proto: kernelops.ProtoESP, ReqID: nextReqID(), Min: lo, Max: hi})
		noErr(t, fmt.Sprintf("alloc SPI #%d", i), err)
		if spi < lo || spi > hi {
			t.Fatalf("SPI %#x outside requested range %#x..%#x", spi, lo, hi)
		}
		if seen[spi] {
			t.Fatalf("SPI %#x allocated twice", spi)
		}
		seen[spi] = true
	}
	c := h.caps()
	spi, err := sad.AllocSPI(ctx, kernelops.SPIRequest{Src: h.Remote, Dst: h.Local, Proto: kernelops.ProtoESP, ReqID: nextReqID()})
	noErr(t, "alloc SPI in the configured range", err)
	if c.SPIMin != 0 && (spi < c.SPIMin || spi > c.SPIMax) {
		t.Errorf("SPI %#x outside configured range %#x..%#x", spi, c.SPIMin, c.SPIMax)
	}
	// A one-SPI range is exhausted by its second allocation.
	one := uint32(0xd1000000)
	_, err = sad.AllocSPI(ctx, kernelops.SPIRequest{Src: h.Remote, Dst: h.Local, Proto: kernelops.ProtoESP, Min: one, Max: one})
	noErr(t, "alloc the only SPI of a range", err)
	_, err = sad.AllocSPI(ctx, kernelops.SPIRequest{Src: h.Remote, Dst: h.Local, Proto: kernelops.ProtoESP, Min: one, Max: one})
	wantErr(t, "alloc from an exhausted range", err, kernelops.ErrNoSpace)
}

func checkSA(t TB, what string, got *kernelops.SAEntry, want *kernelops.SA, keys bool) {
	t.Helper()
	bad := func(field string, g, w any) { t.Errorf("%s: %s = %v, want %v", what, field, g, w) }
	if got.ID != want.ID {
		bad("ID", got.ID, want.ID)
	}
	if got.Mode != want.Mode {
		bad("Mode", got.Mode, want.Mode)
	}
	if got.ReqID != want.ReqID {
		bad("ReqID", got.ReqID, want.ReqID)
	}
	if got.Encryption.ID != want.Encryption.ID {
		bad("Encryption.ID", got.Encryption.ID, want.Encryption.ID)
	}
	if got.Integrity.ID != want.Integrity.ID {
		bad("Integrity.ID", got.Integrity.ID, want.Integrity.ID)
	}
	if got.ReplayWindow != want.ReplayWindow {
		bad("ReplayWindow", got.ReplayWindow, want.ReplayWindow)
	}
	if got.Lifetime != want.Lifetime {
		bad("Lifetime", got.Lifetime, want.Lifetime)
	}
	if keys && string(got.Encryption.Key) != string(want.Encryption.Key) {
		t.Errorf("%s: encryption key does not read back", what)
	}
}

// testSALifecycle: add, get, update, delete, with the sentinel errors a
// kernel gives for each mistake.
func testSALifecycle(t TB, h *Harness) {
	sad := sadOf(t, h)
	ctx := t.Context()
	sa := h.outSA(nextReqID())
	if h.caps().Has(kernelops.CapLifetimeTime) {
		sa.Lifetime.Soft.AddTime, sa.Lifetime.Hard.AddTime = 3600*h.timeUnit(), 7200*h.timeUnit()
	}
	if h.caps().Has(kernelops.CapLifetimeBytes) {
		sa.Lifetime.Soft.Bytes, sa.Lifetime.Hard.Bytes = 1<<30, 1<<31
	}

	_, err := sad.GetSA(ctx, sa.ID)
	wantErr(t, "get before add", err, kernelops.ErrNotFound)
	wantErr(t, "update before add", sad.UpdateSA(ctx, sa), kernelops.ErrNotFound)
	wantErr(t, "delete before add", sad.DeleteSA(ctx, sa.ID), kernelops.ErrNotFound)

	noErr(t, "add", sad.AddSA(ctx, sa))
	wantErr(t, "add twice", sad.AddSA(ctx, sa.Clone()), kernelops.ErrExists)

	got, err := sad.GetSA(ctx, sa.ID)
	noErr(t, "get", err)
	checkSA(t, "get after add", got, sa, h.caps().Has(kernelops.CapKeysReadable))
	if got.Counters.AddTime.IsZero() {
		t.Errorf("get after add: Counters.AddTime is zero")
	}
	if got.Counters.Bytes != 0 || got.Counters.Packets != 0 {
		t.Errorf("fresh SA has counters %d bytes / %d packets", got.Counters.Bytes, got.Counters.Packets)
	}

	up := sa.Clone()
	if h.caps().Has(kernelops.CapLifetimeTime) {
		up.Lifetime.Soft.AddTime, up.Lifetime.Hard.AddTime = 3*3600*h.timeUnit(), 4*3600*h.timeUnit()
	}
	noErr(t, "update", sad.UpdateSA(ctx, up))
	got, err = sad.GetSA(ctx, sa.ID)
	noErr(t, "get after update", err)
	checkSA(t, "get after update", got, up, false)

	// The dump shows it too.
	found := 0
	for e, err := range sad.SAs(ctx) {
		noErr(t, "dump", err)
		if e.ID == sa.ID {
			found++
			checkSA(t, "dump", e, up, false)
		}
	}
	if found != 1 {
		t.Errorf("dump listed the SA %d times", found)
	}

	noErr(t, "delete", sad.DeleteSA(ctx, sa.ID))
	_, err = sad.GetSA(ctx, sa.ID)
	wantErr(t, "get after delete", err, kernelops.ErrNotFound)
	wantErr(t, "delete twice", sad.DeleteSA(ctx, sa.ID), kernelops.ErrNotFound)
}

// testSAAllocThenAdd: an SPI from AllocSPI is filled by AddSA — the way
// every inbound child SA is installed.
func testSAAllocThenAdd(t TB, h *Harness) {
	sad := sadOf(t, h)
	ctx := t.Context()
	reqid := nextReqID()
	spi, err := sad.AllocSPI(ctx, kernelops.SPIRequest{Src: h.Remote, Dst: h.Local, Proto: kernelops.ProtoESP, ReqID: reqid})
	noErr(t, "alloc SPI", err)
	sa := h.inSA(reqid)
	sa.ID.SPI = spi
	noErr(t, "add SA on the allocated SPI", sad.AddSA(ctx, sa))
	got, err := sad.GetSA(ctx, sa.ID)
	noErr(t, "get", err)
	if got.State == kernelops.SALarval {
		t.Errorf("SA still larval after AddSA")
	}
	checkSA(t, "get", got, sa, h.caps().Has(kernelops.CapKeysReadable))
	wantErr(t, "add again", sad.AddSA(ctx, sa.Clone()), kernelops.ErrExists)
	noErr(t, "delete", sad.DeleteSA(ctx, sa.ID))
}

// testSABadInput: every kind of bad SA is ErrInvalid naming the field, and
// nothing is installed.
func testSABadInput(t TB, h *Harness) {
	sad := sadOf(t, h)
	ctx := t.Context()
	before := countSAs(t, sad)
	tests := []struct {
		name  string
		mod   func(*kernelops.SA)
		field string
	}{
		{"wrong key length", func(sa *kernelops.SA) { sa.Encryption.Key = sa.Encryption.Key[:len(sa.Encryption.Key)-1] }, "Encryption.Key"},
		{"unknown algorithm", func(sa *kernelops.SA) { sa.Encryption.ID = 4242 }, "Encryption.ID"},
		{"SPI 0", func(sa *kernelops.SA) { sa.ID.SPI = 0 }, "ID.SPI"},
		{"mixed address families", func(sa *kernelops.SA) { sa.ID.Dst = mustAddr("2001:db8::1") }, "ID.Dst"},
		{"invalid prefix", func(sa *kernelops.SA) {
			sa.Mode = kernelops.ModeTransport
			sa.Selector.Src = mustPrefix(h.Local.String() + "/8")
		}, "Selector.Src"},
		{"soft above hard", func(sa *kernelops.SA) { sa.Lifetime.Soft.Packets, sa.Lifetime.Hard.Packets = 10, 5 }, "Lifetime.Soft.Packets"},
	}
	for _, tc := range tests {
		sa := h.outSA(nextReqID())
		tc.mod(sa)
		err := sad.AddSA(ctx, sa)
		wantErr(t, tc.name, err, kernelops.ErrInvalid)
		if ke := asKError(err); ke != nil && ke.Field != tc.field {
			t.Errorf("%s: error names field %q, want %q (%v)", tc.name, ke.Field, tc.field, err)
		}
	}
	if after := countSAs(t, sad); after != before {
		t.Errorf("bad input installed something: %d SAs before, %d after", before, after)
	}
}

// testSAConcurrent: 8 goroutines add and delete at once; the SAD ends as
// it began and (under -race) nothing races.
func testSAConcurrent(t TB, h *Harness) {
	sad := sadOf(t, h)
	ctx := t.Context()
	before := countSAs(t, sad)
	concurrently(t, h.bulkN(100), func(g, i int) error {
		sa := h.outSA(nextReqID())
		if err := sad.AddSA(ctx, sa); err != nil {
			return fmt.Errorf("add: %w", err)
		}
		if _, err := sad.GetSA(ctx, sa.ID); err != nil {
			return fmt.Errorf("get: %w", err)
		}
		if err := sad.DeleteSA(ctx, sa.ID); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		return nil
	})
	if after := countSAs(t, sad); after != before {
		t.Errorf("%d SAs before, %d after add+delete", before, after)
	}
}

// testSAFlush: FlushSAs removes the SAs keyplane owns.
func testSAFlush(t TB, h *Harness) {
	sad := sadOf(t, h)
	ctx := t.Context()
	for range 10 {
		noErr(t, "add", sad.AddSA(ctx, h.outSA(nextReqID())))
	}
	noErr(t, "flush", sad.FlushSAs(ctx))
	for e, err := range sad.SAs(ctx) {
		noErr(t, "dump", err)
		if e.ReqID >= kernelops.DefaultReqIDMin && e.ReqID <= kernelops.DefaultReqIDMax && e.State != kernelops.SALarval {
			t.Errorf("owned SA %s survived the flush", e.ID)
		}
	}
	noErr(t, "flush when empty", sad.FlushSAs(ctx))
}

// concurrently runs op n times in each of 8 goroutines and reports the
// first failure of each goroutine.
func concurrently(t TB, n int, op func(g, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range n {
				if err := op(g, i); err != nil {
					errs <- fmt.Errorf("goroutine %d, round %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("%v", err)
	}
}

func countSAs(t TB, sad kernelops.SAD) int {
	t.Helper()
	n := 0
	for _, err := range sad.SAs(t.Context()) {
		noErr(t, "dump", err)
		n++
	}
	return n
}
