package nokernel_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
)

func TestOutboundVerdicts(t *testing.T) {
	b, _ := model(t, nil)
	if r := out(b, t, 1, 100); r.Verdict != nokernel.Passed || r.Policy != nil {
		t.Fatalf("no policy: %+v, want passed", r)
	}
	block := tunnelPolicy(kernelops.DirOut, kernelops.ActionBlock, 0)
	block.Selector = kernelops.Selector{Src: netip.MustParsePrefix("10.0.0.0/8")}
	noErr(t, "add block", b.AddPolicy(ctx(t), block))
	if r := out(b, t, 1, 100); r.Verdict != nokernel.Dropped {
		t.Fatalf("block policy: %+v", r)
	}
	// A more specific pass policy wins by AutoPriority's pass band.
	pass := tunnelPolicy(kernelops.DirOut, kernelops.ActionPass, 0)
	noErr(t, "add pass", b.AddPolicy(ctx(t), pass))
	if r := out(b, t, 1, 100); r.Verdict != nokernel.Passed || r.Policy == nil || *r.Policy != pass.ID() {
		t.Fatalf("pass policy: %+v", r)
	}
	// An explicit priority beats it.
	block.Priority = 1
	noErr(t, "replace block", b.ReplacePolicy(ctx(t), block))
	if r := out(b, t, 1, 100); r.Verdict != nokernel.Dropped {
		t.Fatalf("explicit priority 1 block: %+v", r)
	}
	// Equal priorities: the older policy wins (XFRM keeps insertion order).
	pass.Priority = 1
	noErr(t, "replace pass", b.ReplacePolicy(ctx(t), pass))
	if r := out(b, t, 1, 100); r.Verdict != nokernel.Dropped {
		t.Fatalf("equal priorities: %+v, want the older block", r)
	}
	// Another family does not match an IPv4 selector.
	r, err := b.Inject(ctx(t), nokernel.Packet{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Proto: 17, Len: 1})
	noErr(t, "inject v6", err)
	if r.Verdict != nokernel.Passed || r.Policy != nil {
		t.Fatalf("v6 packet: %+v", r)
	}
	_, err = b.Inject(ctx(t), nokernel.Packet{Src: inner1, Dst: netip.MustParseAddr("2001:db8::2")})
	mustErr(t, "mixed families", err, kernelops.ErrInvalid, 0)
}

func TestOutboundCountersAndSA(t *testing.T) {
	b, clk := model(t, nil)
	noErr(t, "policy", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 5)))
	older := gcmSA(local, remote, 5)
	noErr(t, "add older", b.AddSA(ctx(t), older))
	clk.Advance(time.Second)
	newer := gcmSA(local, remote, 5)
	noErr(t, "add newer", b.AddSA(ctx(t), newer))
	wrongReqID := gcmSA(local, remote, 6)
	noErr(t, "add other reqid", b.AddSA(ctx(t), wrongReqID))

	r := out(b, t, 3, 100)
	if r.Verdict != nokernel.Protected || len(r.SAs) != 1 || r.SAs[0] != newer.ID {
		t.Fatalf("%+v, want protected by the newer SA", r)
	}
	e, _ := b.GetSA(ctx(t), newer.ID)
	if e.Counters.Bytes != 300 || e.Counters.Packets != 3 || e.Counters.Replay.OSeq != 3 ||
		!e.Counters.FirstUse.Equal(clk.Now()) || !e.Counters.LastUsed.Equal(clk.Now()) {
		t.Fatalf("counters %+v", e.Counters)
	}
	clk.Advance(5 * time.Second)
	out(b, t, 1, 50)
	e, _ = b.GetSA(ctx(t), newer.ID)
	if !e.Counters.LastUsed.Equal(clk.Now()) || e.Counters.FirstUse.Equal(clk.Now()) {
		t.Fatalf("last-used %v, first use %v: want last-used now, first use earlier", e.Counters.LastUsed, e.Counters.FirstUse)
	}
	pe, _ := b.GetPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 5).ID())
	if !pe.UseTime.Equal(clk.Now()) {
		t.Errorf("policy use time %v, want now", pe.UseTime)
	}
	// A soft-expired (dying) SA loses to a valid one.
	newer2 := newer.Clone()
	newer2.Lifetime.Soft.Packets = 5
	noErr(t, "update", b.UpdateSA(ctx(t), newer2))
	out(b, t, 1, 1) // the 5th packet: soft
	if r := out(b, t, 1, 1); r.SAs[0] != older.ID {
		t.Fatalf("after the newer SA soft-expired: %v, want the older one", r.SAs)
	}
	if e, _ := b.GetSA(ctx(t), newer.ID); e.State != kernelops.SADying {
		t.Fatalf("soft-expired SA in state %s", e.State)
	}
}

func TestAcquire(t *testing.T) {
	b, clk := model(t, nil)
	ev := subscribe(t, b, kernelops.KindAcquire)
	trap := tunnelPolicy(kernelops.DirOut, kernelops.ActionTrap, 9)
	noErr(t, "trap", b.AddPolicy(ctx(t), trap))
	r := out(b, t, 1, 100)
	if r.Verdict != nokernel.Dropped || !r.Acquire {
		t.Fatalf("first packet: %+v", r)
	}
	r = out(b, t, 5, 100)
	if r.Acquire || b.PendingAcquires() != 1 {
		t.Fatalf("later packets raised an acquire (%+v, %d pending)", r, b.PendingAcquires())
	}
	evs := ev.take()
	if len(evs) != 1 {
		t.Fatalf("%d acquires, want 1", len(evs))
	}
	a := evs[0].(*kernelops.AcquireEvent)
	want := kernelops.AcquireEvent{Seq: 1, Src: local, Dst: remote, Proto: kernelops.ProtoESP, ReqID: 9, Policy: trap.ID(),
		Packet: kernelops.Selector{Src: host(inner1), Dst: host(inner2), Proto: 17, SrcPort: 40000, DstPort: 9}}
	if *a != want {
		t.Fatalf("acquire %+v\nwant    %+v", *a, want)
	}
	// The pending acquire times out after 30s; then the flow acquires again.
	clk.Advance(30 * time.Second)
	if b.PendingAcquires() != 0 {
		t.Fatal("acquire still pending after 30s")
	}
	if r := out(b, t, 1, 100); !r.Acquire {
		t.Fatal("no new acquire after the timeout")
	}
	if evs := ev.take(); len(evs) != 1 || evs[0].(*kernelops.AcquireEvent).Seq != 2 {
		t.Fatalf("second acquire: %v", evs)
	}
	// The SA answering it ends the pending acquire and carries the flow.
	sa := gcmSA(local, remote, 9)
	noErr(t, "add", b.AddSA(ctx(t), sa))
	if b.PendingAcquires() != 0 {
		t.Fatal("acquire pending after its SA was added")
	}
	if r := out(b, t, 1, 100); r.Verdict != nokernel.Protected {
		t.Fatalf("with the SA: %+v", r)
	}
	// Another flow on the same trap shares the template's acquire key.
	noErr(t, "delete", b.DeleteSA(ctx(t), sa.ID))
	out(b, t, 1, 1)
	r, _ = b.Inject(ctx(t), nokernel.Packet{Src: inner1, Dst: inner2, Proto: 6, SrcPort: 1, DstPort: 2, Len: 1})
	if r.Acquire {
		t.Error("a second flow of one tunnel template raised its own acquire")
	}
}

// TestLifetimesOnOnePacket: one large packet trips soft and hard bytes at
// once: soft then hard, each once; the SA is gone and the policy acquires.
func TestLifetimesOnOnePacket(t *testing.T) {
	b, _ := model(t, nil)
	ev := subscribe(t, b, kernelops.KindExpire|kernelops.KindAcquire)
	sa := gcmSA(local, remote, 3)
	sa.Lifetime.Soft.Bytes, sa.Lifetime.Hard.Bytes = 1000, 2000
	noErr(t, "add", b.AddSA(ctx(t), sa))
	noErr(t, "policy", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 3)))
	if r := out(b, t, 1, 5000); r.Verdict != nokernel.Protected {
		t.Fatalf("the packet reaching the limit: %+v", r)
	}
	if r := out(b, t, 1, 10); r.Verdict != nokernel.Dropped || !r.Acquire {
		t.Fatalf("after the hard expire: %+v", r)
	}
	var got []string
	for _, e := range ev.take() {
		switch e := e.(type) {
		case *kernelops.ExpireEvent:
			got = append(got, fmt.Sprintf("expire hard=%v %s", e.Hard, e.Limit))
		case *kernelops.AcquireEvent:
			got = append(got, "acquire")
		}
	}
	want := []string{"expire hard=false bytes", "expire hard=true bytes", "acquire"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestTimeLifetimes(t *testing.T) {
	b, clk := model(t, nil)
	ev := subscribe(t, b, kernelops.KindExpire)
	sa := gcmSA(local, remote, 3)
	sa.Lifetime.Soft.UseTime, sa.Lifetime.Hard.UseTime = 10*time.Second, 20*time.Second
	sa.Lifetime.Hard.AddTime = time.Hour
	noErr(t, "add", b.AddSA(ctx(t), sa))
	noErr(t, "policy", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 3)))
	clk.Advance(30 * time.Minute)
	out(b, t, 1, 1)
	clk.Advance(10 * time.Second)
	clk.Advance(10 * time.Second)
	var got []string
	for _, e := range ev.take() {
		x := e.(*kernelops.ExpireEvent)
		got = append(got, fmt.Sprintf("%v/%s@%s", x.Hard, x.Limit, "t"))
	}
	if fmt.Sprint(got) != "[false/use-time@t true/use-time@t]" {
		t.Fatalf("expires %v", got)
	}
}

func TestInbound(t *testing.T) {
	b, _ := model(t, nil)
	in := gcmSA(remote, local, 4)
	in.Dir = kernelops.DirIn
	noErr(t, "add", b.AddSA(ctx(t), in))
	inject := func(seq uint64, inner bool) nokernel.Result {
		t.Helper()
		p := nokernel.Packet{Dir: kernelops.DirIn, SA: in.ID, Seq: seq, Len: 100}
		if inner {
			p.Src, p.Dst, p.Proto = inner2, inner1, 17
		}
		r, err := b.Inject(ctx(t), p)
		noErr(t, "inject", err)
		return r
	}
	for _, tc := range []struct {
		seq  uint64
		want nokernel.Verdict
	}{{1, nokernel.Delivered}, {2, nokernel.Delivered}, {3, nokernel.Delivered}, {2, nokernel.Dropped},
		{100, nokernel.Delivered}, {60, nokernel.Dropped}, {69, nokernel.Delivered}, {69, nokernel.Dropped},
		{68, nokernel.Dropped} /* 32 behind: outside */, {0, nokernel.Delivered} /* next: 101 */, {1 << 33, nokernel.Dropped}} {
		if r := inject(tc.seq, false); r.Verdict != tc.want {
			t.Fatalf("seq %d: %+v, want %s", tc.seq, r, tc.want)
		}
	}
	e, _ := b.GetSA(ctx(t), in.ID)
	if e.Counters.Packets != 6 || e.Counters.ReplayDrops != 4 || e.Counters.Replay.Seq != 101 {
		t.Fatalf("counters %+v", e.Counters)
	}
	// 101 and 100 are in the window; 69 fell out when 101 arrived.
	if bm := e.Counters.Replay.Bitmap; len(bm) != 1 || bm[0] != 0b11 {
		t.Errorf("bitmap %#x, want 0b11", bm)
	}
	// Inner packets of a tunnel SA need an inbound policy expecting it.
	if r := inject(0, true); r.Verdict != nokernel.Dropped {
		t.Fatalf("tunnel traffic without an inbound policy: %+v", r)
	}
	noErr(t, "in policy", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirIn, kernelops.ActionIPsec, 4)))
	if r := inject(0, true); r.Verdict != nokernel.Delivered {
		t.Fatalf("with the inbound policy: %+v", r)
	}
	noErr(t, "in policy, other reqid", b.ReplacePolicy(ctx(t), tunnelPolicy(kernelops.DirIn, kernelops.ActionIPsec, 99)))
	if r := inject(0, true); r.Verdict != nokernel.Dropped {
		t.Fatalf("inbound policy for another reqid: %+v", r)
	}
	// Outbound SAs take no inbound traffic; unknown SPIs are dropped.
	o := gcmSA(remote, local, 4)
	o.Dir = kernelops.DirOut
	noErr(t, "add out", b.AddSA(ctx(t), o))
	if r, _ := b.Inject(ctx(t), nokernel.Packet{Dir: kernelops.DirIn, SA: o.ID, Len: 1}); r.Verdict != nokernel.Dropped {
		t.Fatalf("inbound on an outbound SA: %+v", r)
	}
	gone := o.ID
	gone.SPI = 0xdead
	if r, _ := b.Inject(ctx(t), nokernel.Packet{Dir: kernelops.DirIn, SA: gone, Len: 1}); r.Verdict != nokernel.Dropped {
		t.Fatalf("inbound on no SA: %+v", r)
	}
}

func TestReplayBitmap(t *testing.T) {
	b, _ := model(t, nil)
	in := gcmSA(remote, local, 4)
	in.ReplayWindow = 100 // not a multiple of 32
	in.ESN = true
	noErr(t, "add", b.AddSA(ctx(t), in))
	accept := func(seq uint64) bool {
		r, err := b.Inject(ctx(t), nokernel.Packet{Dir: kernelops.DirIn, SA: in.ID, Seq: seq, Len: 1})
		noErr(t, "inject", err)
		return r.Verdict == nokernel.Delivered
	}
	base := uint64(1) << 40 // ESN: 64-bit sequence numbers
	for i := range uint64(100) {
		if !accept(base + i) {
			t.Fatalf("seq base+%d refused", i)
		}
	}
	for i := range uint64(100) {
		if accept(base + i) {
			t.Fatalf("replay of base+%d accepted", i)
		}
	}
	if !accept(base + 140) { // shifts 40: base+40..base+99 remain inside the window
		t.Fatal("advance refused")
	}
	if accept(base + 40) {
		t.Fatal("replay of base+40 (still in the window) accepted")
	}
	if accept(base + 39) {
		t.Fatal("base+39 (outside the window) accepted")
	}
	if !accept(base + 139) {
		t.Fatal("an unseen seq inside the window refused")
	}
}

func TestMappingEvent(t *testing.T) {
	b, _ := model(t, nil)
	ev := subscribe(t, b, kernelops.KindMapping)
	in := gcmSA(remote, local, 4)
	in.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 4500}
	noErr(t, "add", b.AddSA(ctx(t), in))
	send := func(from string) {
		_, err := b.Inject(ctx(t), nokernel.Packet{Dir: kernelops.DirIn, SA: in.ID, Len: 1, From: netip.MustParseAddrPort(from)})
		noErr(t, "inject", err)
	}
	send("198.51.100.1:4500")
	send("198.51.100.1:31337")
	send("198.51.100.1:31337")
	evs := ev.take()
	if len(evs) != 1 {
		t.Fatalf("%d mapping events, want 1", len(evs))
	}
	m := evs[0].(*kernelops.MappingEvent)
	if m.Old.String() != "198.51.100.1:4500" || m.New.String() != "198.51.100.1:31337" || m.SA != in.ID {
		t.Fatalf("mapping %+v", m)
	}
}

func TestSyncEvents(t *testing.T) {
	b, clk := model(t, nil)
	ev := subscribe(t, b, kernelops.KindSync)
	sa := gcmSA(local, remote, 2)
	noErr(t, "add", b.AddSA(ctx(t), sa))
	noErr(t, "policy", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 2)))
	noErr(t, "thresholds", b.SetSyncThresholds(ctx(t), sa.ID, kernelops.SyncThresholds{ReplayDiff: 10, Timer: 5 * time.Second}))
	out(b, t, 3, 1)
	clk.Advance(4 * time.Second)
	if evs := ev.take(); len(evs) != 0 {
		t.Fatalf("early sync: %v", evs)
	}
	clk.Advance(time.Second)
	evs := ev.take()
	if len(evs) != 1 || evs[0].(*kernelops.SyncEvent).Reason != kernelops.SyncTimer || evs[0].(*kernelops.SyncEvent).State.Replay.OSeq != 3 {
		t.Fatalf("timer sync: %v", evs)
	}
	clk.Advance(time.Minute)
	if evs := ev.take(); len(evs) != 0 {
		t.Fatalf("sync without change: %v", evs)
	}
	out(b, t, 10, 1)
	evs = ev.take()
	if len(evs) != 1 || evs[0].(*kernelops.SyncEvent).Reason != kernelops.SyncReplay || evs[0].(*kernelops.SyncEvent).State.Replay.OSeq != 13 {
		t.Fatalf("replay sync: %v", evs)
	}
	// HA takeover: the written state carries on, lifetimes included.
	st, err := b.GetSyncState(ctx(t), sa.ID)
	noErr(t, "get", err)
	up := sa.Clone()
	up.Lifetime.Hard.Packets = 1000
	noErr(t, "update", b.UpdateSA(ctx(t), up))
	st.Packets = 999
	noErr(t, "set", b.SetSyncState(ctx(t), sa.ID, st))
	out(b, t, 1, 1)
	_, err = b.GetSA(ctx(t), sa.ID)
	mustErr(t, "after the 1000th packet counted from the synced state", err, kernelops.ErrNotFound, 0)
	st.Replay.OSeq = 1 << 32
	noErr(t, "add", b.AddSA(ctx(t), sa))
	err = b.SetSyncState(ctx(t), sa.ID, st)
	mustErr(t, "64-bit sequence on a non-ESN SA", err, kernelops.ErrInvalid, 0)
}

func TestPolicyLifetime(t *testing.T) {
	b, clk := model(t, nil)
	ev := subscribe(t, b, kernelops.KindPolicyExpire)
	p := tunnelPolicy(kernelops.DirOut, kernelops.ActionPass, 0)
	p.Lifetime.Soft.UseTime, p.Lifetime.Hard.UseTime = 10*time.Second, 20*time.Second
	noErr(t, "add", b.AddPolicy(ctx(t), p))
	for range 6 { // used every 5s: its use-time never runs out
		clk.Advance(5 * time.Second)
		out(b, t, 1, 1)
	}
	if evs := ev.take(); len(evs) != 0 {
		t.Fatalf("a used policy expired: %v", evs)
	}
	clk.Advance(20 * time.Second)
	evs := ev.take()
	if len(evs) != 2 || evs[0].(*kernelops.PolicyExpireEvent).Hard || !evs[1].(*kernelops.PolicyExpireEvent).Hard {
		t.Fatalf("policy expires %v, want soft then hard", evs)
	}
	_, err := b.GetPolicy(ctx(t), p.ID())
	mustErr(t, "get after hard expire", err, kernelops.ErrNotFound, 0)
	p.Lifetime.Hard.Bytes = 1
	err = b.AddPolicy(ctx(t), p)
	mustErr(t, "byte lifetime on a policy", err, kernelops.ErrInvalid, 0)
}

func TestHoles(t *testing.T) {
	b, _ := model(t, nil)
	catchAll := &kernelops.Policy{Dir: kernelops.DirOut, Action: kernelops.ActionBlock,
		Selector: kernelops.Selector{Src: netip.MustParsePrefix("0.0.0.0/0"), Dst: netip.MustParsePrefix("0.0.0.0/0")}}
	noErr(t, "block all", b.AddPolicy(ctx(t), catchAll))
	ike := nokernel.Packet{Src: local, Dst: remote, Proto: 17, SrcPort: 500, DstPort: 500, Len: 300}
	if r, _ := b.Inject(ctx(t), ike); r.Verdict != nokernel.Dropped {
		t.Fatalf("IKE before holes: %+v", r)
	}
	noErr(t, "open", b.OpenHoles(ctx(t), kernelops.HoleSet{IKEPorts: []uint16{500}}))
	if r, _ := b.Inject(ctx(t), ike); r.Verdict != nokernel.Passed {
		t.Fatalf("IKE through the hole: %+v", r)
	}
	noErr(t, "reopen with 4500", b.OpenHoles(ctx(t), kernelops.HoleSet{IKEPorts: []uint16{4500}, IPv6ND: true}))
	if r, _ := b.Inject(ctx(t), ike); r.Verdict != nokernel.Dropped {
		t.Fatalf("port 500 after reopening without it: %+v", r)
	}
	nd := nokernel.Packet{Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("ff02::1"), Proto: 58, SrcPort: 135}
	if r, _ := b.Inject(ctx(t), nd); r.Verdict != nokernel.Passed || r.Policy == nil {
		t.Fatalf("neighbour solicitation: %+v", r)
	}
	// A user's policy on a hole's selector is not taken over.
	noErr(t, "close", b.CloseHoles(ctx(t)))
	mine := &kernelops.Policy{Selector: kernelops.Selector{Proto: 17, DstPort: 500}, Dir: kernelops.DirIn, Action: kernelops.ActionBlock}
	noErr(t, "user policy", b.AddPolicy(ctx(t), mine))
	mustErr(t, "open over a user policy", b.OpenHoles(ctx(t), kernelops.HoleSet{IKEPorts: []uint16{500}}), kernelops.ErrExists, 0)
	n := 0
	for range b.Policies(ctx(t)) {
		n++
	}
	if n != 2 {
		t.Fatalf("%d policies after the refused open, want the 2 user policies", n)
	}
}

func TestMigrate(t *testing.T) {
	b, clk := model(t, nil)
	ev := subscribe(t, b, kernelops.KindMigrate|kernelops.KindExpire)
	o, i := gcmSA(local, remote, 8), gcmSA(remote, local, 8)
	o.Lifetime.Hard.AddTime = time.Minute
	for _, sa := range []*kernelops.SA{o, i} {
		noErr(t, "add", b.AddSA(ctx(t), sa))
	}
	p := tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 8)
	noErr(t, "policy", b.AddPolicy(ctx(t), p))
	out(b, t, 5, 10)
	nl, nr := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	m := kernelops.Migration{ReqID: 8, Old: kernelops.Endpoints{Local: local, Remote: remote},
		New: kernelops.Endpoints{Local: nl, Remote: nr}, Encap: &kernelops.Encap{SrcPort: 4500, DstPort: 31000},
		SAs: []kernelops.SAID{o.ID, i.ID}, Policies: []kernelops.PolicyID{p.ID()}}
	bad := m
	bad.SAs = []kernelops.SAID{o.ID, {Src: local, Dst: remote, SPI: 0x999999, Proto: kernelops.ProtoESP}}
	mustErr(t, "migrate with a missing SA", b.Migrate(ctx(t), bad), kernelops.ErrNotFound, 0)
	if _, err := b.GetSA(ctx(t), o.ID); err != nil {
		t.Fatal("a failed migrate moved an SA")
	}
	noErr(t, "migrate", b.Migrate(ctx(t), m))
	no, ni := o.ID, i.ID
	no.Src, no.Dst, ni.Src, ni.Dst = nl, nr, nr, nl
	eo, err := b.GetSA(ctx(t), no)
	noErr(t, "get migrated out", err)
	ei, err := b.GetSA(ctx(t), ni)
	noErr(t, "get migrated in", err)
	if eo.Counters.Packets != 5 || *eo.Encap != (kernelops.Encap{SrcPort: 4500, DstPort: 31000}) ||
		*ei.Encap != (kernelops.Encap{SrcPort: 31000, DstPort: 4500}) {
		t.Fatalf("migrated: out %+v %+v, in %+v", eo.Counters, eo.Encap, ei.Encap)
	}
	pe, _ := b.GetPolicy(ctx(t), p.ID())
	if pe.Templates[0].Src != nl || pe.Templates[0].Dst != nr {
		t.Fatalf("template %+v", pe.Templates[0])
	}
	// Traffic follows, and the lifetime moved with the SA.
	if r := out(b, t, 1, 10); r.Verdict != nokernel.Protected || r.SAs[0] != no {
		t.Fatalf("after migrate: %+v", r)
	}
	clk.Advance(time.Minute)
	var kinds []string
	for _, e := range ev.take() {
		switch e := e.(type) {
		case *kernelops.MigrateEvent:
			if e.Policy != p.ID() || len(e.Entries) != 1 || e.Entries[0].New.Local != nl {
				t.Errorf("migrate event %+v", e)
			}
			kinds = append(kinds, "migrate")
		case *kernelops.ExpireEvent:
			if e.SA != no || !e.Hard {
				t.Errorf("expire %+v, want hard of the migrated id", e)
			}
			kinds = append(kinds, "expire")
		}
	}
	if fmt.Sprint(kinds) != "[migrate expire]" {
		t.Fatalf("events %v", kinds)
	}
}

func TestOffloadModes(t *testing.T) {
	b, _ := model(t, map[string]string{
		"interfaces": "eth0=192.0.2.1/24;eth1=192.0.2.2/24;eth2=192.0.2.3/24",
		"offload":    "eth1=crypto;eth2=crypto+packet",
	})
	for _, tc := range []struct {
		dev    string
		mode   kernelops.OffloadMode
		active kernelops.OffloadMode
		refuse bool
	}{
		{"eth0", kernelops.OffloadAuto, kernelops.OffloadNone, false},
		{"eth1", kernelops.OffloadAuto, kernelops.OffloadCrypto, false},
		{"eth2", kernelops.OffloadAuto, kernelops.OffloadPacket, false},
		{"eth1", kernelops.OffloadCrypto, kernelops.OffloadCrypto, false},
		{"eth1", kernelops.OffloadPacket, 0, true},
		{"eth0", kernelops.OffloadCrypto, 0, true},
		{"nosuch", kernelops.OffloadCrypto, 0, true},
		{"nosuch", kernelops.OffloadAuto, kernelops.OffloadNone, false},
	} {
		sa := gcmSA(local, remote, 1)
		sa.Offload = kernelops.Offload{Device: tc.dev, Mode: tc.mode}
		err := b.AddSA(ctx(t), sa)
		if tc.refuse {
			var oe *kernelops.OffloadError
			if !errors.As(err, &oe) || oe.Device != tc.dev || oe.Mode != tc.mode || oe.Reason == "" {
				t.Errorf("%s %s: %v, want an OffloadError naming both", tc.dev, tc.mode, err)
			}
			mustErr(t, "refused offload", err, kernelops.ErrOffload, 0)
			if _, err := b.GetSA(ctx(t), sa.ID); err == nil {
				t.Errorf("%s %s: refused SA installed", tc.dev, tc.mode)
			}
			continue
		}
		noErr(t, fmt.Sprintf("%s %s", tc.dev, tc.mode), err)
		e, _ := b.GetSA(ctx(t), sa.ID)
		if sa.Offload.Active != tc.active || e.Offload.Active != tc.active {
			t.Errorf("%s %s: active %s (stored %s), want %s", tc.dev, tc.mode, sa.Offload.Active, e.Offload.Active, tc.active)
		}
	}
	s, err := b.OffloadSupport(ctx(t), "eth2")
	noErr(t, "support", err)
	if !s.Crypto || !s.Packet || s.Detail == "" {
		t.Errorf("eth2 support %+v", s)
	}
	_, err = b.OffloadSupport(ctx(t), "nosuch")
	mustErr(t, "support of a missing device", err, kernelops.ErrNotFound, 0)
}

// TestSyncOnAdd: an SA added with its sync state (SA.Sync, an HA
// takeover) counts its lifetimes from it — packets from the synced
// count, time from the synced add time — and sends from the synced
// sequence number.
func TestSyncOnAdd(t *testing.T) {
	b, clk := model(t, nil)
	noErr(t, "policy", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 2)))
	sa := gcmSA(local, remote, 2)
	sa.Lifetime.Hard.Packets = 1000
	sa.Sync = &kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 5000}, Packets: 998, AddTime: clk.Now().Add(-time.Hour)}
	noErr(t, "add", b.AddSA(ctx(t), sa))
	out(b, t, 1, 1)
	st, err := b.GetSyncState(ctx(t), sa.ID)
	noErr(t, "get", err)
	if st.Replay.OSeq != 5001 || st.Packets != 999 || !st.AddTime.Equal(clk.Now().Add(-time.Hour)) {
		t.Fatalf("after one packet: OSeq %d, %d packets, added %v; want 5001, 999, an hour ago", st.Replay.OSeq, st.Packets, st.AddTime)
	}
	out(b, t, 1, 1)
	_, err = b.GetSA(ctx(t), sa.ID)
	mustErr(t, "after the 1000th packet counted from the synced state", err, kernelops.ErrNotFound, 0)

	old := gcmSA(local, remote, 3)
	old.Lifetime.Hard.AddTime = 2 * time.Hour
	old.Sync = &kernelops.SyncState{AddTime: clk.Now().Add(-time.Hour - 50*time.Minute)}
	noErr(t, "add", b.AddSA(ctx(t), old))
	clk.Advance(9 * time.Minute)
	_, err = b.GetSA(ctx(t), old.ID)
	noErr(t, "before its hard add time, counted from the synced one", err)
	clk.Advance(2 * time.Minute)
	waitGone := time.Now().Add(5 * time.Second)
	for {
		if _, err = b.GetSA(ctx(t), old.ID); err != nil || time.Now().After(waitGone) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustErr(t, "after its hard add time, counted from the synced one", err, kernelops.ErrNotFound, 0)
}
