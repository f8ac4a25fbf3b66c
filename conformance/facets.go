package conformance

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// testSAFeatures: each SA feature the backend claims installs and reads
// back.
func testSAFeatures(t TB, h *Harness) {
	sad := sadOf(t, h)
	ctx := t.Context()
	c := h.caps()
	type feature struct {
		cap   kernelops.Cap
		mod   func(*kernelops.SA)
		check func(*kernelops.SAEntry) bool
	}
	features := []feature{
		{kernelops.CapESN, func(sa *kernelops.SA) { sa.ESN, sa.ReplayWindow = true, 128 },
			func(e *kernelops.SAEntry) bool { return e.ESN && e.ReplayWindow == 128 }},
		{kernelops.CapUDPEncap, func(sa *kernelops.SA) { sa.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 4501} },
			func(e *kernelops.SAEntry) bool {
				return e.Encap != nil && e.Encap.SrcPort == 4500 && e.Encap.DstPort == 4501
			}},
		{kernelops.CapTransportMode, func(sa *kernelops.SA) { sa.Mode = kernelops.ModeTransport },
			func(e *kernelops.SAEntry) bool { return e.Mode == kernelops.ModeTransport }},
		{kernelops.CapMarks, func(sa *kernelops.SA) { sa.ID.Mark = kernelops.Mark{Value: 0x42, Mask: 0xff} },
			func(e *kernelops.SAEntry) bool { return e.ID.Mark == kernelops.Mark{Value: 0x42, Mask: 0xff} }},
		{kernelops.CapIfID, func(sa *kernelops.SA) { sa.IfID = 0x77 },
			func(e *kernelops.SAEntry) bool { return e.IfID == 0x77 }},
		{kernelops.CapSADir, func(sa *kernelops.SA) { sa.Dir = kernelops.DirOut },
			func(e *kernelops.SAEntry) bool { return e.Dir == kernelops.DirOut }},
	}
	tested := 0
	for _, f := range features {
		if !c.Has(f.cap) {
			continue
		}
		tested++
		sa := h.outSA(nextReqID())
		f.mod(sa)
		if err := sad.AddSA(ctx, sa); err != nil {
			t.Errorf("%s: add: %v", f.cap, err)
			continue
		}
		e, err := sad.GetSA(ctx, sa.ID)
		if err != nil {
			t.Errorf("%s: get: %v", f.cap, err)
			continue
		}
		if !f.check(e) {
			t.Errorf("%s: feature does not read back: %+v", f.cap, e.SA)
		}
		noErr(t, "delete", sad.DeleteSA(ctx, sa.ID))
	}
	// Every claimed algorithm installs.
	for _, alg := range c.Algorithms.Encryption {
		sa := h.outSA(nextReqID())
		if !h.setCipher(sa, alg) {
			continue
		}
		tested++
		if err := sad.AddSA(ctx, sa); err != nil {
			t.Errorf("claimed %s: add: %v", alg, err)
			continue
		}
		noErr(t, "delete", sad.DeleteSA(ctx, sa.ID))
	}
	if tested == 0 {
		t.Skipf("backend claims no optional SA feature and no algorithm")
	}
}

// setCipher configures sa for alg with an integrity algorithm the
// dataplane claims.
func (h *Harness) setCipher(sa *kernelops.SA, alg kernelops.EncrID) bool {
	info, ok := alg.Info()
	if !ok {
		return false
	}
	bits := 0
	if info.KeyBits != nil {
		bits = info.KeyBits[0]
	}
	n, err := alg.KeyLen(bits)
	if err != nil {
		return false
	}
	sa.Encryption = kernelops.Encryption{ID: alg, KeyBits: bits, Key: key(n)}
	sa.Integrity = kernelops.Integrity{}
	if !info.AEAD {
		sa.Integrity = h.integrity()
	}
	return true
}

func testSubscriptionCancel(t TB, h *Harness) {
	src := facet[kernelops.EventSource](t, h, kernelops.CapEvents)
	ctx, cancel := context.WithCancel(t.Context())
	sub, err := src.Subscribe(ctx, kernelops.SubscribeOptions{})
	noErr(t, "subscribe", err)
	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-sub.Events():
			if !ok {
				noErr(t, "close after cancel", sub.Close())
				return
			}
		case <-deadline:
			t.Fatalf("subscription still open 5s after its context ended")
		}
	}
}

func testAddressRefcounts(t TB, h *Harness) {
	am := facet[kernelops.AddrManager](t, h, kernelops.CapAddrManage)
	if h.IfName == "" {
		t.Skipf("harness names no interface for address tests")
	}
	ctx := t.Context()
	p := netip.MustParsePrefix("198.18.7.1/32")
	var ev *events
	if h.caps().Has(kernelops.CapChangeEvents) {
		ev = subscribe(t, h, kernelops.KindAddr, 0)
	}
	noErr(t, "add #1", am.AddAddress(ctx, h.IfName, p))
	noErr(t, "add #2", am.AddAddress(ctx, h.IfName, p))
	if ev != nil {
		ev.wait("address-added event", eventWait, func(e kernelops.Event) bool {
			a, ok := e.(*kernelops.AddrEvent)
			return ok && a.Added && a.Prefix == p && a.IfName == h.IfName
		})
	}
	present := func() bool {
		as, err := kernelops.As[kernelops.AddrSelector](h.Backend)
		if err != nil {
			return true // cannot look; trust the refcount errors below
		}
		ifs, err := as.Interfaces(ctx)
		noErr(t, "interfaces", err)
		for _, i := range ifs {
			if i.Name == h.IfName && slices.Contains(i.Addrs, p) {
				return true
			}
		}
		return false
	}
	if !present() {
		t.Fatalf("address %s not on %s after add", p, h.IfName)
	}
	noErr(t, "remove #1", am.RemoveAddress(ctx, h.IfName, p))
	if !present() {
		t.Fatalf("address %s removed while a reference remains", p)
	}
	noErr(t, "remove #2", am.RemoveAddress(ctx, h.IfName, p))
	if kernelops.Has[kernelops.AddrSelector](h.Backend) && present() {
		t.Fatalf("address %s still there after the last remove", p)
	}
	if ev != nil {
		ev.wait("address-removed event", eventWait, func(e kernelops.Event) bool {
			a, ok := e.(*kernelops.AddrEvent)
			return ok && !a.Added && a.Prefix == p
		})
	}
	wantErr(t, "remove without reference", am.RemoveAddress(ctx, h.IfName, p), kernelops.ErrNotFound)
}

func testAddressSelection(t TB, h *Harness) {
	as := facet[kernelops.AddrSelector](t, h, kernelops.CapAddrSelect)
	ctx := t.Context()
	ifs, err := as.Interfaces(ctx)
	noErr(t, "interfaces", err)
	if len(ifs) == 0 {
		t.Fatalf("no interfaces")
	}
	if h.IfName != "" && !slices.ContainsFunc(ifs, func(i kernelops.Interface) bool { return i.Name == h.IfName }) {
		t.Errorf("interface %s not listed", h.IfName)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	r, err := as.RouteTo(ctx, lo)
	noErr(t, "route to 127.0.0.1", err)
	if !r.Src.IsLoopback() || r.IfName == "" {
		t.Errorf("route to loopback: %+v", r)
	}
	_, err = as.RouteTo(ctx, netip.Addr{})
	wantErr(t, "route to the zero address", err, kernelops.ErrInvalid)
}

func testIKESockets(t TB, h *Harness) {
	s := facet[kernelops.Sockets](t, h, kernelops.CapSockets)
	ctx := t.Context()
	lo := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
	a, err := s.ListenIKE(ctx, kernelops.IKEListen{Addr: lo})
	noErr(t, "listen a", err)
	defer a.Close()
	b, err := s.ListenIKE(ctx, kernelops.IKEListen{Addr: lo})
	noErr(t, "listen b", err)
	defer b.Close()
	msg := []byte("IKE_SA_INIT, pretend")
	_, err = a.WriteTo(msg, netip.AddrPort{}, b.LocalAddr())
	noErr(t, "write", err)
	buf := make([]byte, 1500)
	type rd struct {
		n             int
		local, remote netip.AddrPort
		err           error
	}
	ch := make(chan rd, 1)
	go func() {
		n, l, r, err := b.ReadFrom(buf)
		ch <- rd{n, l, r, err}
	}()
	select {
	case got := <-ch:
		noErr(t, "read", got.err)
		if string(buf[:got.n]) != string(msg) {
			t.Errorf("read %q", buf[:got.n])
		}
		if got.remote != a.LocalAddr() {
			t.Errorf("remote %s, want %s", got.remote, a.LocalAddr())
		}
		if got.local.Addr() != lo.Addr() || got.local.Port() != b.LocalAddr().Port() {
			t.Errorf("local %s, want 127.0.0.1:%d", got.local, b.LocalAddr().Port())
		}
	case <-time.After(eventWait):
		t.Fatalf("datagram not received")
	}
	// On NAT-T sockets the marker is the dataplane's business: what one
	// writes, the other reads, byte for byte.
	na, err := s.ListenIKE(ctx, kernelops.IKEListen{Addr: lo, Encap: true})
	noErr(t, "listen NAT-T a", err)
	defer na.Close()
	nb, err := s.ListenIKE(ctx, kernelops.IKEListen{Addr: lo, Encap: true})
	noErr(t, "listen NAT-T b", err)
	defer nb.Close()
	_, err = na.WriteTo(msg, netip.AddrPort{}, nb.LocalAddr())
	noErr(t, "write NAT-T", err)
	go func() {
		n, l, r, err := nb.ReadFrom(buf)
		ch <- rd{n, l, r, err}
	}()
	select {
	case got := <-ch:
		noErr(t, "read NAT-T", got.err)
		if string(buf[:got.n]) != string(msg) {
			t.Errorf("NAT-T socket read %q, want %q (the non-ESP marker is the dataplane's to add and strip)", buf[:got.n], msg)
		}
	case <-time.After(eventWait):
		t.Fatalf("datagram not received on the NAT-T socket")
	}
}

func testHoles(t TB, h *Harness) {
	hs := facet[kernelops.Holes](t, h, kernelops.CapHoles)
	ctx := t.Context()
	set := kernelops.HoleSet{IKEPorts: []uint16{500, 4500}, IPv6ND: true}
	noErr(t, "open", hs.OpenHoles(ctx, set))
	noErr(t, "reopen", hs.OpenHoles(ctx, set))
	if spd, err := kernelops.As[kernelops.SPD](h.Backend); err == nil {
		pass := 0
		for e, err := range spd.Policies(ctx) {
			noErr(t, "dump", err)
			if e.Action == kernelops.ActionPass {
				pass++
			}
		}
		if pass == 0 {
			t.Errorf("holes open but the SPD shows no pass policy")
		}
	}
	noErr(t, "close", hs.CloseHoles(ctx))
	noErr(t, "close again", hs.CloseHoles(ctx))
}

func testOffload(t TB, h *Harness) {
	off := facet[kernelops.Offloader](t, h, kernelops.CapOffload)
	if h.IfName == "" {
		t.Skipf("harness names no interface for offload tests")
	}
	sad := sadOf(t, h)
	ctx := t.Context()
	sup, err := off.OffloadSupport(ctx, h.IfName)
	noErr(t, "offload support of "+h.IfName, err)
	sa := h.outSA(nextReqID())
	sa.Offload = kernelops.Offload{Device: h.IfName, Mode: kernelops.OffloadAuto}
	noErr(t, "add with auto offload", sad.AddSA(ctx, sa))
	switch sa.Offload.Active {
	case kernelops.OffloadNone, kernelops.OffloadCrypto, kernelops.OffloadPacket:
	default:
		t.Errorf("auto offload left Active = %s", sa.Offload.Active)
	}
	if !sup.Packet && sa.Offload.Active == kernelops.OffloadPacket || !sup.Crypto && sa.Offload.Active == kernelops.OffloadCrypto {
		t.Errorf("auto got %s offload on a device that supports %+v", sa.Offload.Active, sup)
	}
	if sup.Crypto {
		return
	}
	explicit := h.outSA(nextReqID())
	explicit.Offload = kernelops.Offload{Device: h.IfName, Mode: kernelops.OffloadCrypto}
	err = sad.AddSA(ctx, explicit)
	wantErr(t, "crypto offload on a device without it", err, kernelops.ErrOffload)
	var oe *kernelops.OffloadError
	if !errors.As(err, &oe) || oe.Device != h.IfName || oe.Mode != kernelops.OffloadCrypto || oe.Reason == "" {
		t.Errorf("offload error does not say what failed: %v", err)
	}
	_, err = sad.GetSA(ctx, explicit.ID)
	wantErr(t, "get after refused offload", err, kernelops.ErrNotFound)
}

func testSync(t TB, h *Harness) {
	sy := facet[kernelops.Syncer](t, h, kernelops.CapSync)
	sad := sadOf(t, h)
	ctx := t.Context()
	sa := h.outSA(nextReqID())
	if h.Traffic != nil {
		h.installOut(t, sa)
	} else {
		noErr(t, "add", sad.AddSA(ctx, sa))
	}
	st, err := sy.GetSyncState(ctx, sa.ID)
	noErr(t, "get sync state", err)
	st.Replay.OSeq = 1000
	noErr(t, "set sync state", sy.SetSyncState(ctx, sa.ID, st))
	st2, err := sy.GetSyncState(ctx, sa.ID)
	noErr(t, "get sync state", err)
	if st2.Replay.OSeq != 1000 {
		t.Fatalf("OSeq reads back %d after writing 1000", st2.Replay.OSeq)
	}
	_, err = sy.GetSyncState(ctx, h.outSA(1).ID)
	wantErr(t, "sync state of a missing SA", err, kernelops.ErrNotFound)
	if h.Traffic == nil {
		t.Logf("sync events not checked: no traffic source")
		return
	}
	ev := subscribe(t, h, kernelops.KindSync, 0)
	noErr(t, "thresholds", sy.SetSyncThresholds(ctx, sa.ID, kernelops.SyncThresholds{ReplayDiff: 5, Timer: time.Second}))
	h.send(t, 10, 64)
	h.sleep(1100 * time.Millisecond)
	got := ev.wait("sync event", eventWait, func(e kernelops.Event) bool {
		s, ok := e.(*kernelops.SyncEvent)
		return ok && s.SA.SPI == sa.ID.SPI
	}).(*kernelops.SyncEvent)
	if got.State.Replay.OSeq < 1005 {
		t.Errorf("sync event OSeq %d, want >= 1005 after 10 packets from 1000", got.State.Replay.OSeq)
	}
}

func testMigrate(t TB, h *Harness) {
	m := facet[kernelops.Migrator](t, h, kernelops.CapMigrate)
	sad, spd := sadOf(t, h), spdOf(t, h)
	ctx := t.Context()
	reqid := nextReqID()
	out, in := h.outSA(reqid), h.inSA(reqid)
	p := h.outPolicy(kernelops.ActionIPsec, reqid)
	for _, sa := range []*kernelops.SA{out, in} {
		noErr(t, "add SA", sad.AddSA(ctx, sa))
	}
	noErr(t, "add policy", spd.AddPolicy(ctx, p))
	nl, nr := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	if !h.Local.Is4() {
		nl, nr = netip.MustParseAddr("2001:db8:ffff::1"), netip.MustParseAddr("2001:db8:ffff::2")
	}
	err := m.Migrate(ctx, kernelops.Migration{ReqID: reqid,
		Old: kernelops.Endpoints{Local: h.Local, Remote: h.Remote}, New: kernelops.Endpoints{Local: nl, Remote: nr},
		SAs: []kernelops.SAID{out.ID, in.ID}, Policies: []kernelops.PolicyID{p.ID()}})
	noErr(t, "migrate", err)
	for _, c := range []struct {
		old    kernelops.SAID
		src, d netip.Addr
	}{{out.ID, nl, nr}, {in.ID, nr, nl}} {
		_, err := sad.GetSA(ctx, c.old)
		wantErr(t, "old SA after migrate", err, kernelops.ErrNotFound)
		nid := c.old
		nid.Src, nid.Dst = c.src, c.d
		e, err := sad.GetSA(ctx, nid)
		noErr(t, "migrated SA "+nid.String(), err)
		if e.ReqID != reqid {
			t.Errorf("migrated SA reqid %d, want %d", e.ReqID, reqid)
		}
	}
	pe, err := spd.GetPolicy(ctx, p.ID())
	noErr(t, "policy after migrate", err)
	if tm := pe.Templates[0]; tm.Src != nl || tm.Dst != nr {
		t.Errorf("policy template %s -> %s after migrate, want %s -> %s", tm.Src, tm.Dst, nl, nr)
	}
}

func testXfrmInterfaces(t TB, h *Harness) {
	xi := facet[kernelops.XfrmInterfaces](t, h, kernelops.CapXfrmInterfaces)
	ctx := t.Context()
	x := kernelops.XfrmInterface{Name: "kpxfrm7", IfID: 77, Underlay: h.IfName}
	noErr(t, "add", xi.AddXfrmInterface(ctx, x))
	wantErr(t, "add twice", xi.AddXfrmInterface(ctx, x), kernelops.ErrExists)
	listed := func() bool {
		as, err := kernelops.As[kernelops.AddrSelector](h.Backend)
		if err != nil {
			return true
		}
		ifs, err := as.Interfaces(ctx)
		noErr(t, "interfaces", err)
		return slices.ContainsFunc(ifs, func(i kernelops.Interface) bool { return i.Name == x.Name && i.XfrmIfID == x.IfID })
	}
	if !listed() {
		t.Errorf("xfrm interface %s not listed with if_id %d", x.Name, x.IfID)
	}
	noErr(t, "delete", xi.DeleteXfrmInterface(ctx, x.Name))
	wantErr(t, "delete twice", xi.DeleteXfrmInterface(ctx, x.Name), kernelops.ErrNotFound)
}

// testSyncOnAdd: an SA added with a sync state (SA.Sync: an HA
// takeover's replay state and usage, no SetSyncState round trip) reads
// back with it through GetSyncState — added alone and in a batch, with
// and without ESN; an update or a 64-bit sequence number without ESN is
// refused and installs nothing.
func testSyncOnAdd(t TB, h *Harness) {
	sy := facet[kernelops.Syncer](t, h, kernelops.CapSync)
	sad := sadOf(t, h)
	ctx := t.Context()
	added := time.Now().Add(-90 * time.Second).Truncate(time.Second)
	type sample struct {
		esn      bool
		oseq     uint64
		seq      uint64
		bitmap   []uint32
		window   uint32
		describe string
	}
	cases := []sample{{oseq: 7000, seq: 5000, bitmap: []uint32{0x800000ff}, window: 32, describe: "32-bit"}}
	if h.caps().Has(kernelops.CapESN) {
		cases = append(cases, sample{esn: true, oseq: 1<<32 + 7, seq: 1<<32 + 100, window: 128,
			bitmap: []uint32{0xffff0001, 0, 0x10, 0x80000000}, describe: "ESN"})
	}
	for _, c := range cases {
		for _, batch := range []bool{false, true} {
			reqid := nextReqID()
			out, in := h.outSA(reqid), h.inSA(reqid)
			for _, sa := range []*kernelops.SA{out, in} {
				sa.ESN, sa.ReplayWindow = c.esn, c.window
			}
			out.Sync = &kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: c.oseq}, AddTime: added}
			in.Sync = &kernelops.SyncState{Replay: kernelops.ReplayState{Seq: c.seq, Bitmap: slices.Clone(c.bitmap)},
				Bytes: 123456, Packets: 789, AddTime: added, UseTime: added.Add(time.Second)}
			how := c.describe + " alone"
			if batch {
				how = c.describe + " in a batch"
				ops := []kernelops.Op{{Kind: kernelops.OpAddSA, SA: out}, {Kind: kernelops.OpAddSA, SA: in}}
				noErr(t, how+": apply", kernelops.Apply(ctx, h.Backend, ops))
			} else {
				noErr(t, how+": add out", sad.AddSA(ctx, out))
				noErr(t, how+": add in", sad.AddSA(ctx, in))
			}
			ost, err := sy.GetSyncState(ctx, out.ID)
			noErr(t, how+": get out", err)
			if ost.Replay.OSeq != c.oseq {
				t.Errorf("%s: outbound OSeq reads back %d, added with %d", how, ost.Replay.OSeq, c.oseq)
			}
			if !ost.AddTime.Equal(added) {
				t.Errorf("%s: outbound add time reads back %v, added with %v", how, ost.AddTime, added)
			}
			ist, err := sy.GetSyncState(ctx, in.ID)
			noErr(t, how+": get in", err)
			if ist.Replay.Seq != c.seq || !slices.Equal(ist.Replay.Bitmap[:min(len(ist.Replay.Bitmap), len(c.bitmap))], c.bitmap) {
				t.Errorf("%s: inbound replay reads back seq %d bitmap %#x, added with %d %#x", how,
					ist.Replay.Seq, ist.Replay.Bitmap, c.seq, c.bitmap)
			}
			if ist.Bytes != 123456 || ist.Packets != 789 || !ist.AddTime.Equal(added) {
				t.Errorf("%s: inbound usage reads back %d bytes, %d packets, added %v; added with 123456, 789, %v",
					how, ist.Bytes, ist.Packets, ist.AddTime, added)
			}
			for _, sa := range []*kernelops.SA{out, in} {
				noErr(t, how+": delete", sad.DeleteSA(ctx, sa.ID))
			}
		}
	}
	// What an add cannot take is refused before anything is installed.
	sa := h.outSA(nextReqID())
	noErr(t, "add", sad.AddSA(ctx, sa))
	upd := sa.Clone()
	upd.Sync = &kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 9}}
	wantErr(t, "update with a sync state", sad.UpdateSA(ctx, upd), kernelops.ErrInvalid)
	noErr(t, "delete", sad.DeleteSA(ctx, sa.ID))
	wide := h.outSA(nextReqID())
	wide.Sync = &kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 1 << 32}}
	wantErr(t, "64-bit OSeq without ESN", sad.AddSA(ctx, wide), kernelops.ErrInvalid)
	_, err := sad.GetSA(ctx, wide.ID)
	wantErr(t, "get after the refused add", err, kernelops.ErrNotFound)
}
