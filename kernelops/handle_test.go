package kernelops_test

import (
	"context"
	"errors"
	"iter"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// recDriver is a test double: a SAD that records what reaches it and
// answers with err when set.
type recDriver struct {
	caps kernelops.Cap

	mu      sync.Mutex
	calls   []string
	err     error
	sas     map[kernelops.SAID]bool
	expired []*kernelops.ExpireEvent
	keep    bool // Expire's answer
}

func (d *recDriver) note(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, s)
}

func (d *recDriver) Capabilities() kernelops.Capabilities {
	return kernelops.Capabilities{Caps: d.caps,
		Algorithms: kernelops.AlgorithmSet{Encryption: []iana.EncrID{iana.EncrAESGCM16}},
		Notes:      map[kernelops.Cap]string{kernelops.CapESN: "this double has no ESN"}}
}
func (d *recDriver) Close() error { return nil }
func (d *recDriver) AddSA(_ context.Context, sa *kernelops.SA) error {
	d.note("add " + sa.ID.String())
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.sas[sa.ID] = true
	return nil
}
func (d *recDriver) UpdateSA(_ context.Context, sa *kernelops.SA) error { return d.AddSA(nil, sa) }
func (d *recDriver) DeleteSA(_ context.Context, id kernelops.SAID) error {
	d.note("delete " + id.String())
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.sas[id] {
		return syscall.ESRCH
	}
	delete(d.sas, id)
	return nil
}
func (d *recDriver) GetSA(_ context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.sas[id] {
		return nil, syscall.ESRCH
	}
	return &kernelops.SAEntry{SA: kernelops.SA{ID: id}}, nil
}
func (d *recDriver) SAs(context.Context) iter.Seq2[*kernelops.SAEntry, error] {
	return func(yield func(*kernelops.SAEntry, error) bool) {
		d.mu.Lock()
		var ids []kernelops.SAID
		for id := range d.sas {
			ids = append(ids, id)
		}
		d.mu.Unlock()
		for _, id := range ids {
			if !yield(&kernelops.SAEntry{SA: kernelops.SA{ID: id}}, nil) {
				return
			}
		}
	}
}
func (d *recDriver) FlushSAs(context.Context) error { return nil }
func (d *recDriver) Expire(_ context.Context, ev *kernelops.ExpireEvent) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expired = append(d.expired, ev)
	if ev.Hard {
		delete(d.sas, ev.SA)
	}
	return d.keep
}

// batchDriver adds a Batcher that records the ops it is given.
type batchDriver struct {
	*recDriver
	got []kernelops.Op
}

func (b *batchDriver) Apply(ctx context.Context, ops []kernelops.Op) error {
	b.got = append(b.got, ops...)
	for i := range ops {
		ops[i].Err = b.AddSA(ctx, ops[i].SA)
	}
	return kernelops.BatchResult(ops)
}

var (
	local, remote = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	t0            = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func goodSA(spi uint32) *kernelops.SA {
	return &kernelops.SA{ID: kernelops.SAID{Src: local, Dst: remote, SPI: spi, Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, ReqID: kernelops.DefaultReqIDMin,
		Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make([]byte, 20)}}
}

func open(t *testing.T, d kernelops.Driver, clk clock.Clock) *kernelops.Handle {
	t.Helper()
	h, err := kernelops.NewHandle(t.Context(), "double", kernelops.Options{Clock: clk},
		func(context.Context, *kernelops.Env) (kernelops.Driver, error) { return d, nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestHandleRefusesAClaimWithoutItsFacet(t *testing.T) {
	d := &recDriver{caps: kernelops.CapSAD | kernelops.CapSPD}
	_, err := kernelops.NewHandle(t.Context(), "double", kernelops.Options{},
		func(context.Context, *kernelops.Env) (kernelops.Driver, error) { return d, nil })
	if !errors.Is(err, kernelops.ErrInvalid) {
		t.Fatalf("a driver claiming spd without an SPD: %v, want ErrInvalid at open", err)
	}
}

// TestHandleChecksBeforeAndWrapsAfter: bad input and unclaimed features
// never reach the driver; what the driver returns comes back as an *Error
// naming backend, operation and object.
func TestHandleChecksBeforeAndWrapsAfter(t *testing.T) {
	d := &recDriver{caps: kernelops.CapSAD | kernelops.CapTunnelMode, sas: map[kernelops.SAID]bool{}}
	h := open(t, d, nil)
	ctx := t.Context()
	bad := goodSA(0x1000)
	bad.Encryption.Key = bad.Encryption.Key[:3]
	esn := goodSA(0x1001)
	esn.ESN, esn.ReplayWindow = true, 32
	cbc := goodSA(0x1002)
	cbc.Encryption = kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: make([]byte, 16)}
	cbc.Integrity = kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: make([]byte, 32)}
	for _, tc := range []struct {
		name  string
		sa    *kernelops.SA
		want  error
		field string
	}{
		{"short key", bad, kernelops.ErrInvalid, "Encryption.Key"},
		{"unclaimed ESN", esn, kernelops.ErrNotSupported, "ESN"},
		{"unclaimed algorithm", cbc, kernelops.ErrNotSupported, "Encryption.ID"},
	} {
		err := h.AddSA(ctx, tc.sa)
		var ke *kernelops.Error
		if !errors.Is(err, tc.want) || !errors.As(err, &ke) || ke.Backend != "double" || ke.Op != "add SA" || ke.Field != tc.field {
			t.Errorf("%s: %v, want %v naming double, add SA and %s", tc.name, err, tc.want, tc.field)
		}
	}
	if len(d.calls) != 0 {
		t.Errorf("refused input reached the driver: %v", d.calls)
	}
	if _, err := h.GetSA(ctx, goodSA(0x2000).ID); !errors.Is(err, kernelops.ErrNotFound) || !errors.Is(err, syscall.ESRCH) {
		t.Errorf("driver's ESRCH: %v, want ErrNotFound and the errno", err)
	}
	d.err = errors.New("dataplane says no")
	err := h.AddSA(ctx, goodSA(0x2001))
	var ke *kernelops.Error
	if !errors.As(err, &ke) || ke.Backend != "double" || ke.Op != "add SA" || ke.Object != goodSA(0x2001).ID.String() {
		t.Errorf("plain driver error: %v, want it wrapped with backend, op and object", err)
	}
	d.err = nil
	if _, err := kernelops.As[kernelops.SPD](h); !errors.Is(err, kernelops.ErrNotSupported) {
		t.Errorf("As[SPD] without CapSPD: %v", err)
	}
	if err := h.AddPolicy(ctx, &kernelops.Policy{}); !errors.Is(err, kernelops.ErrNotSupported) {
		t.Errorf("AddPolicy without CapSPD: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.AddSA(cctx, goodSA(0x2002)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	h.Close()
	if err := h.AddSA(ctx, goodSA(0x2003)); !errors.Is(err, kernelops.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestHandleBatchChecksEachOp(t *testing.T) {
	bd := &batchDriver{recDriver: &recDriver{caps: kernelops.CapSAD | kernelops.CapTunnelMode | kernelops.CapBatch,
		sas: map[kernelops.SAID]bool{}}}
	h := open(t, bd, nil)
	bad := goodSA(0x3001)
	bad.ID.SPI = 7
	ops := []kernelops.Op{{Kind: kernelops.OpAddSA, SA: goodSA(0x3000)}, {Kind: kernelops.OpAddSA, SA: bad},
		{Kind: kernelops.OpAddSA, SA: goodSA(0x3002)}}
	err := kernelops.Apply(t.Context(), h, ops)
	var be *kernelops.BatchError
	if !errors.As(err, &be) || be.Failed != 1 || !errors.Is(ops[1].Err, kernelops.ErrInvalid) || ops[0].Err != nil || ops[2].Err != nil {
		t.Fatalf("batch: %v; ops %v %v %v", err, ops[0].Err, ops[1].Err, ops[2].Err)
	}
	if len(bd.got) != 2 {
		t.Errorf("the driver's batch got %d ops, want the 2 valid ones", len(bd.got))
	}
}

// TestHandleAllocatesSPIs: a driver without an SPIAllocator gets the
// front end's: a reservation a later AddSA fills, a delete of a bare
// reservation that succeeds, and a reservation that lapses after
// LarvalTimeout.
func TestHandleAllocatesSPIs(t *testing.T) {
	clk := clock.NewFake(t0)
	d := &recDriver{caps: kernelops.CapSAD | kernelops.CapTunnelMode, sas: map[kernelops.SAID]bool{}}
	h := open(t, d, clk)
	ctx := t.Context()
	one := kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP, Min: 0x5000, Max: 0x5000}
	spi, err := h.AllocSPI(ctx, one)
	if err != nil || spi != 0x5000 {
		t.Fatalf("alloc: %#x %v", spi, err)
	}
	if _, err := h.AllocSPI(ctx, one); !errors.Is(err, kernelops.ErrNoSpace) {
		t.Fatalf("second alloc from a one-SPI range: %v", err)
	}
	id := kernelops.SAID{Src: remote, Dst: local, SPI: spi, Proto: kernelops.ProtoESP}
	if err := h.DeleteSA(ctx, id); err != nil {
		t.Fatalf("delete of a reservation: %v", err)
	}
	if spi, err = h.AllocSPI(ctx, one); err != nil {
		t.Fatalf("alloc after the delete: %v", err)
	}
	clk.Advance(kernelops.LarvalTimeout + time.Second)
	if spi, err = h.AllocSPI(ctx, one); err != nil {
		t.Fatalf("alloc after the reservation lapsed: %v", err)
	}
	sa := goodSA(spi)
	sa.ID = id
	if err := h.AddSA(ctx, sa); err != nil {
		t.Fatal(err)
	}
	clk.Advance(kernelops.LarvalTimeout + time.Second) // filled: no longer lapses
	if _, err := h.AllocSPI(ctx, one); !errors.Is(err, kernelops.ErrNoSpace) {
		t.Errorf("SPI of an installed SA handed out again: %v", err)
	}
}

// TestHandleFillsSoftwareLifetimes: for a driver claiming software
// lifetimes, which need not keep them (recDriver reads back none), GetSA
// and the dump read back the lifetimes an SA was last added or updated
// with, singly or in a batch; for any other driver they are the driver's.
func TestHandleFillsSoftwareLifetimes(t *testing.T) {
	caps := kernelops.CapSAD | kernelops.CapTunnelMode | kernelops.CapBatch | kernelops.CapLifetimeTime
	life := func(soft time.Duration) kernelops.Lifetimes {
		return kernelops.Lifetimes{Soft: kernelops.Limits{AddTime: soft}, Hard: kernelops.Limits{AddTime: 2 * soft}}
	}
	check := func(t *testing.T, h *kernelops.Handle, want map[kernelops.SAID]kernelops.Lifetimes) {
		t.Helper()
		for id, lt := range want {
			e, err := h.GetSA(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if e.Lifetime != lt {
				t.Errorf("GetSA %s: lifetime %+v, want %+v", id, e.Lifetime, lt)
			}
		}
		n := 0
		for e, err := range h.SAs(t.Context()) {
			if err != nil {
				t.Fatal(err)
			}
			n++
			if e.Lifetime != want[e.ID] {
				t.Errorf("dump %s: lifetime %+v, want %+v", e.ID, e.Lifetime, want[e.ID])
			}
		}
		if n != len(want) {
			t.Errorf("dump: %d SAs, want %d", n, len(want))
		}
	}
	for _, sw := range []bool{true, false} {
		c := caps
		if sw {
			c |= kernelops.CapSoftwareLifetimes
		}
		bd := &batchDriver{recDriver: &recDriver{caps: c, sas: map[kernelops.SAID]bool{}, keep: true}}
		h := open(t, bd, clock.NewFake(t0))
		want := map[kernelops.SAID]kernelops.Lifetimes{}
		put := func(sa *kernelops.SA) {
			if sw {
				want[sa.ID] = sa.Lifetime
			} else {
				want[sa.ID] = kernelops.Lifetimes{}
			}
		}

		one := goodSA(0x7000)
		one.Lifetime = life(time.Hour)
		if err := h.AddSA(t.Context(), one); err != nil {
			t.Fatal(err)
		}
		put(one)
		check(t, h, want)

		one.Lifetime = life(2 * time.Hour)
		if err := h.UpdateSA(t.Context(), one); err != nil {
			t.Fatal(err)
		}
		put(one)
		check(t, h, want)

		two, up := goodSA(0x7001), one.Clone()
		two.Lifetime, up.Lifetime = life(3*time.Hour), life(4*time.Hour)
		if err := h.Apply(t.Context(), []kernelops.Op{{Kind: kernelops.OpAddSA, SA: two}, {Kind: kernelops.OpUpdateSA, SA: up}}); err != nil {
			t.Fatal(err)
		}
		put(two)
		put(up)
		check(t, h, want)
	}
}

// TestHandleSoftwareLifetimes: the front end fires a driver's lifetimes
// on its clock and publishes only what the driver still held.
func TestHandleSoftwareLifetimes(t *testing.T) {
	clk := clock.NewFake(t0)
	d := &recDriver{caps: kernelops.CapSAD | kernelops.CapTunnelMode | kernelops.CapEvents | kernelops.CapLifetimeTime |
		kernelops.CapSoftwareLifetimes, sas: map[kernelops.SAID]bool{}, keep: true}
	h := open(t, d, clk)
	sub, err := h.Subscribe(t.Context(), kernelops.SubscribeOptions{Kinds: kernelops.KindExpire})
	if err != nil {
		t.Fatal(err)
	}
	sa := goodSA(0x6000)
	sa.Lifetime.Soft.AddTime, sa.Lifetime.Hard.AddTime = time.Minute, 2*time.Minute
	if err := h.AddSA(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	ev := (<-sub.Events()).(*kernelops.ExpireEvent)
	if ev.Hard || ev.SA != sa.ID || ev.Limit != kernelops.LimitAddTime {
		t.Errorf("first expiry %+v, want the soft add-time one", ev)
	}
	d.mu.Lock()
	d.keep = false // the driver lost the SA meanwhile: nothing to report
	d.mu.Unlock()
	clk.Advance(time.Minute)
	select {
	case ev := <-sub.Events():
		t.Errorf("published %+v though the driver no longer held the SA", ev)
	case <-time.After(100 * time.Millisecond):
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.expired) != 2 || !d.expired[1].Hard {
		t.Errorf("driver saw %d expiries, want soft then hard", len(d.expired))
	}
}
