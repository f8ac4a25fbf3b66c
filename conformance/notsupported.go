package conformance

import (
	"context"
	"net/netip"
	"reflect"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

// testFacetsMatchCapabilities: for every row of kernelops' facet table,
// a facet is usable (kernelops.As) exactly when its capability is
// claimed: the same table the engine's As consults.
func testFacetsMatchCaps(t TB, h *Harness) {
	c := h.caps()
	for _, f := range kernelops.Facets() {
		err := f.Usable(h.Backend)
		if c.Has(f.Cap) && err != nil {
			t.Errorf("claims %s but %s is not usable: %v", f.Cap, f.Type, err)
		}
		if !c.Has(f.Cap) && err == nil {
			t.Errorf("%s usable without its capability %s", f.Type, f.Cap)
		}
	}
	if c.Has(kernelops.CapLastUsedAllTraffic) && !c.Has(kernelops.CapLastUsed) {
		t.Errorf("claims last-used-all-traffic without last-used")
	}
	for x := range c.Notes {
		if x == 0 || x&(x-1) != 0 {
			t.Errorf("note keyed by %v, not a single capability", x)
		}
	}
}

// testUnsupported: every operation behind a capability the backend does
// not claim fails with ErrNotSupported — never a silent no-op — and
// installs nothing.
func testUnsupported(t TB, h *Harness) {
	c := h.caps()
	ctx := t.Context()
	b := h.Backend
	checked := 0
	expect := func(what string, err error) {
		t.Helper()
		checked++
		wantErr(t, what, err, kernelops.ErrNotSupported)
	}
	sad, hasSAD := b.(kernelops.SAD)
	spd, hasSPD := b.(kernelops.SPD)

	// SA features.
	if hasSAD && c.Has(kernelops.CapSAD) {
		before := countSAs(t, sad)
		saCases := []struct {
			cap kernelops.Cap
			mod func(*kernelops.SA)
		}{
			{kernelops.CapESN, func(sa *kernelops.SA) { sa.ESN, sa.ReplayWindow = true, 64 }},
			{kernelops.CapUDPEncap, func(sa *kernelops.SA) { sa.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 4500} }},
			{kernelops.CapTransportMode, func(sa *kernelops.SA) { sa.Mode = kernelops.ModeTransport }},
			{kernelops.CapTunnelMode, func(sa *kernelops.SA) { sa.Mode = kernelops.ModeTunnel }},
			{kernelops.CapMarks, func(sa *kernelops.SA) { sa.ID.Mark = kernelops.Mark{Value: 1, Mask: 0xffffffff} }},
			{kernelops.CapIfID, func(sa *kernelops.SA) { sa.IfID = 9 }},
			{kernelops.CapSADir, func(sa *kernelops.SA) { sa.Dir = kernelops.DirOut }},
			{kernelops.CapLifetimeBytes, func(sa *kernelops.SA) { sa.Lifetime.Hard.Bytes = 1 << 30 }},
			{kernelops.CapLifetimePackets, func(sa *kernelops.SA) { sa.Lifetime.Hard.Packets = 1 << 20 }},
			{kernelops.CapLifetimeTime, func(sa *kernelops.SA) { sa.Lifetime.Hard.AddTime = time.Hour }},
			{kernelops.CapSync, func(sa *kernelops.SA) { sa.Sync = &kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 100}} }},
			{kernelops.CapOffload, func(sa *kernelops.SA) {
				sa.Offload = kernelops.Offload{Device: "eth0", Mode: kernelops.OffloadCrypto}
			}},
		}
		for _, sc := range saCases {
			if c.Has(sc.cap) {
				continue
			}
			sa := h.outSA(nextReqID())
			sc.mod(sa)
			expect("SA with "+sc.cap.String(), sad.AddSA(ctx, sa))
		}
		for _, alg := range []kernelops.EncrID{iana.EncrAESGCM16, iana.EncrAESCBC,
			iana.EncrChaCha20Poly1305, iana.EncrAESCTR, iana.EncrAESCCM16, iana.EncrAESGCM8} {
			if c.Algorithms.HasEncr(alg) {
				continue
			}
			sa := h.outSA(nextReqID())
			h.setCipher(sa, alg)
			expect("SA with "+alg.String(), sad.AddSA(ctx, sa))
		}
		if after := countSAs(t, sad); after != before {
			t.Errorf("refused SAs were installed: %d before, %d after", before, after)
		}
	}

	// Policy features.
	if hasSPD && c.Has(kernelops.CapSPD) {
		before := countPolicies(t, spd)
		if !c.Has(kernelops.CapTrap) {
			expect("trap policy", spd.AddPolicy(ctx, h.outPolicy(kernelops.ActionTrap, nextReqID())))
		}
		if !c.Has(kernelops.CapPolicyPriority) {
			p := h.outPolicy(kernelops.ActionIPsec, nextReqID())
			p.Priority = 77
			expect("explicit priority", spd.AddPolicy(ctx, p))
		}
		if !c.Has(kernelops.CapPolicyLifetime) {
			p := h.outPolicy(kernelops.ActionIPsec, nextReqID())
			p.Lifetime.Hard.AddTime = time.Hour
			expect("policy lifetime", spd.AddPolicy(ctx, p))
		}
		if !c.Has(kernelops.CapMarks) {
			p := h.outPolicy(kernelops.ActionIPsec, nextReqID())
			p.Mark = kernelops.Mark{Value: 1, Mask: 0xffffffff}
			expect("policy mark", spd.AddPolicy(ctx, p))
		}
		if !c.Has(kernelops.CapIfID) {
			p := h.outPolicy(kernelops.ActionIPsec, nextReqID())
			p.IfID = 9
			expect("policy if_id", spd.AddPolicy(ctx, p))
		}
		if after := countPolicies(t, spd); after != before {
			t.Errorf("refused policies were installed: %d before, %d after", before, after)
		}
	}

	// Facets the backend implements (a Handle implements all) but does
	// not claim: one call into each, derived from the facet table.
	for _, f := range kernelops.Facets() {
		if c.Has(f.Cap) || !reflect.TypeOf(b).Implements(f.Type) {
			continue
		}
		probe, ok := facetProbes[f.Type]
		if !ok {
			t.Errorf("the suite has no probe for facet %s", f.Type)
			continue
		}
		expect(f.Type.String(), probe(ctx, h))
	}
	if checked == 0 {
		t.Logf("the backend claims every capability this case can probe")
	}
}

// facetProbes calls each facet once with plausible arguments; behind an
// unclaimed capability the call must fail with ErrNotSupported.
var facetProbes = map[reflect.Type]func(ctx context.Context, h *Harness) error{
	rt[kernelops.SAD](): func(ctx context.Context, h *Harness) error {
		_, err := h.Backend.(kernelops.SAD).GetSA(ctx, h.outSA(1).ID)
		return err
	},
	rt[kernelops.UsageReader](): func(ctx context.Context, h *Harness) error {
		for _, err := range h.Backend.(kernelops.UsageReader).Usage(ctx) {
			return err
		}
		return nil
	},
	rt[kernelops.SPD](): func(ctx context.Context, h *Harness) error {
		return h.Backend.(kernelops.SPD).AddPolicy(ctx, h.outPolicy(kernelops.ActionIPsec, nextReqID()))
	},
	rt[kernelops.Batcher](): func(ctx context.Context, h *Harness) error {
		return h.Backend.(kernelops.Batcher).Apply(ctx, []kernelops.Op{{Kind: kernelops.OpDeleteSA, SAID: h.outSA(1).ID}})
	},
	rt[kernelops.EventSource](): func(ctx context.Context, h *Harness) error {
		sub, err := h.Backend.(kernelops.EventSource).Subscribe(ctx, kernelops.SubscribeOptions{})
		if err == nil {
			sub.Close()
		}
		return err
	},
	rt[kernelops.Sockets](): func(ctx context.Context, h *Harness) error {
		c, err := h.Backend.(kernelops.Sockets).ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(loopback, 0)})
		if err == nil {
			c.Close()
		}
		return err
	},
	rt[kernelops.AddrSelector](): func(ctx context.Context, h *Harness) error {
		_, err := h.Backend.(kernelops.AddrSelector).RouteTo(ctx, loopback)
		return err
	},
	rt[kernelops.AddrManager](): func(ctx context.Context, h *Harness) error {
		return h.Backend.(kernelops.AddrManager).AddAddress(ctx, "lo", netip.MustParsePrefix("198.18.9.9/32"))
	},
	rt[kernelops.XfrmInterfaces](): func(ctx context.Context, h *Harness) error {
		return h.Backend.(kernelops.XfrmInterfaces).AddXfrmInterface(ctx, kernelops.XfrmInterface{Name: "kpx9", IfID: 9})
	},
	rt[kernelops.Holes](): func(ctx context.Context, h *Harness) error {
		return h.Backend.(kernelops.Holes).OpenHoles(ctx, kernelops.HoleSet{IKEPorts: []uint16{500}})
	},
	rt[kernelops.Offloader](): func(ctx context.Context, h *Harness) error {
		_, err := h.Backend.(kernelops.Offloader).OffloadSupport(ctx, "lo")
		return err
	},
	rt[kernelops.Syncer](): func(ctx context.Context, h *Harness) error {
		return h.Backend.(kernelops.Syncer).SetSyncThresholds(ctx, h.outSA(1).ID, kernelops.SyncThresholds{ReplayDiff: 1})
	},
	rt[kernelops.IdleWatcher](): func(ctx context.Context, h *Harness) error {
		return h.Backend.(kernelops.IdleWatcher).WatchIdle(ctx, h.outSA(1).ID, time.Minute)
	},
	rt[kernelops.Migrator](): func(ctx context.Context, h *Harness) error {
		return h.Backend.(kernelops.Migrator).Migrate(ctx, kernelops.Migration{ReqID: 1})
	},
}

var loopback = netip.MustParseAddr("127.0.0.1")

func rt[T any]() reflect.Type { return reflect.TypeFor[T]() }
