package conformance

import (
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// testFacetsMatchCapabilities: a claimed facet capability is backed by the
// interface.
func testFacetsMatchCaps(t TB, h *Harness) {
	c := h.caps()
	b := h.Backend
	has := func(x kernelops.Cap, ok bool) {
		if c.Has(x) && !ok {
			t.Errorf("claims %s but does not implement its interface", x)
		}
	}
	_, ok := b.(kernelops.SAD)
	has(kernelops.CapSAD, ok)
	_, ok = b.(kernelops.SPD)
	has(kernelops.CapSPD, ok)
	_, ok = b.(kernelops.EventSource)
	has(kernelops.CapEvents, ok)
	_, ok = b.(kernelops.Sockets)
	has(kernelops.CapSockets, ok)
	_, ok = b.(kernelops.AddrSelector)
	has(kernelops.CapAddrSelect, ok)
	_, ok = b.(kernelops.AddrManager)
	has(kernelops.CapAddrManage, ok)
	_, ok = b.(kernelops.Holes)
	has(kernelops.CapHoles, ok)
	_, ok = b.(kernelops.Offloader)
	has(kernelops.CapOffload, ok)
	_, ok = b.(kernelops.Syncer)
	has(kernelops.CapSync, ok)
	_, ok = b.(kernelops.IdleWatcher)
	has(kernelops.CapIdle, ok)
	_, ok = b.(kernelops.Migrator)
	has(kernelops.CapMigrate, ok)
	_, ok = b.(kernelops.XfrmInterfaces)
	has(kernelops.CapXfrmInterfaces, ok)
	_, ok = b.(kernelops.Batcher)
	has(kernelops.CapBatch, ok)
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
		for _, alg := range []kernelops.EncrID{kernelops.EncrAESGCM16, kernelops.EncrAESCBC,
			kernelops.EncrChaCha20Poly1305, kernelops.EncrAESCTR, kernelops.EncrAESCCM16, kernelops.EncrAESGCM8} {
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

	// Facets implemented but not claimed.
	id := h.outSA(1).ID
	lo := netip.MustParseAddr("127.0.0.1")
	if x, ok := b.(kernelops.Sockets); ok && !c.Has(kernelops.CapSockets) {
		_, err := x.ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(lo, 0)})
		expect("listen IKE", err)
	}
	if x, ok := b.(kernelops.AddrSelector); ok && !c.Has(kernelops.CapAddrSelect) {
		_, err := x.RouteTo(ctx, lo)
		expect("route to", err)
	}
	if x, ok := b.(kernelops.AddrManager); ok && !c.Has(kernelops.CapAddrManage) {
		expect("add address", x.AddAddress(ctx, "lo", netip.MustParsePrefix("198.18.9.9/32")))
	}
	if x, ok := b.(kernelops.Holes); ok && !c.Has(kernelops.CapHoles) {
		expect("open holes", x.OpenHoles(ctx, kernelops.HoleSet{IKEPorts: []uint16{500}}))
	}
	if x, ok := b.(kernelops.Offloader); ok && !c.Has(kernelops.CapOffload) {
		_, err := x.OffloadSupport(ctx, "lo")
		expect("offload support", err)
	}
	if x, ok := b.(kernelops.Syncer); ok && !c.Has(kernelops.CapSync) {
		expect("sync thresholds", x.SetSyncThresholds(ctx, id, kernelops.SyncThresholds{ReplayDiff: 1}))
	}
	if x, ok := b.(kernelops.IdleWatcher); ok && !c.Has(kernelops.CapIdle) {
		expect("watch idle", x.WatchIdle(ctx, id, time.Minute))
	}
	if x, ok := b.(kernelops.Migrator); ok && !c.Has(kernelops.CapMigrate) {
		expect("migrate", x.Migrate(ctx, kernelops.Migration{ReqID: 1}))
	}
	if x, ok := b.(kernelops.XfrmInterfaces); ok && !c.Has(kernelops.CapXfrmInterfaces) {
		expect("add xfrm interface", x.AddXfrmInterface(ctx, kernelops.XfrmInterface{Name: "kpx9", IfID: 9}))
	}
	if x, ok := b.(kernelops.EventSource); ok && !c.Has(kernelops.CapEvents) {
		_, err := x.Subscribe(ctx, kernelops.SubscribeOptions{})
		expect("subscribe", err)
	}
	if checked == 0 {
		t.Logf("the backend claims every capability this case can probe")
	}
}
