package xfrm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/internal/kerneltest"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
)

// Tests that need ESP: they skip on the host ("host kernel lacks ESP")
// and run for real in the VM lab, where a missing feature is a failure.

func rnd(n int) kernelops.Key {
	k := make(kernelops.Key, n)
	rand.Read(k)
	return k
}

var spiNext atomic.Uint32

func nextTestSPI() uint32 { return 0x7f000000 + spiNext.Add(1) }

// gcmSA is a tunnel-mode AES-GCM-16/128 SA from src to dst.
func gcmSA(src, dst netip.Addr, reqid uint32) *kernelops.SA {
	return &kernelops.SA{
		ID:   kernelops.SAID{Src: src, Dst: dst, SPI: nextTestSPI(), Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, ReqID: reqid, ReplayWindow: 32,
		Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: rnd(20)},
	}
}

func tunnelPolicy(dir kernelops.Direction, src, dst netip.Prefix, tsrc, tdst netip.Addr, reqid uint32) *kernelops.Policy {
	return &kernelops.Policy{Selector: kernelops.Selector{Src: src, Dst: dst}, Dir: dir, Action: kernelops.ActionIPsec,
		Templates: []kernelops.Template{{Src: tsrc, Dst: tdst, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}
}

// vmPair is a topology with a backend on each side.
type vmPair struct {
	tp     *kerneltest.Topology
	a, b   *Backend
	ta, tb *kerneltest.Traffic
}

func newVMPair(t *testing.T) *vmPair {
	t.Helper()
	lab.RequireRoot(t)
	tp := kerneltest.NewTopology(t)
	a := tp.Open(t, tp.A, kernelops.Options{}).(*Backend)
	needESP(t, a)
	b := tp.Open(t, tp.B, kernelops.Options{}).(*Backend)
	return &vmPair{tp: tp, a: a, b: b, ta: &kerneltest.Traffic{NS: tp.A}, tb: &kerneltest.Traffic{NS: tp.B}}
}

// tunnelAtoB installs A's outbound SA and policy and B's matching inbound
// SA and policy: traffic LocalInner -> RemoteInner is encrypted by A and
// decrypted by B.
func (p *vmPair) tunnelAtoB(t *testing.T, reqid uint32) *kernelops.SA {
	t.Helper()
	ctx := context.Background()
	tp := p.tp
	out := gcmSA(tp.Local, tp.Remote, reqid)
	in := out.Clone()
	must(t, "A out SA", p.a.AddSA(ctx, out))
	must(t, "B in SA", p.b.AddSA(ctx, in))
	li, ri := netip.PrefixFrom(tp.LocalInner, 32), netip.PrefixFrom(tp.RemoteInner, 32)
	must(t, "A out policy", p.a.AddPolicy(ctx, tunnelPolicy(kernelops.DirOut, li, ri, tp.Local, tp.Remote, reqid)))
	must(t, "B in policy", p.b.AddPolicy(ctx, tunnelPolicy(kernelops.DirIn, li, ri, tp.Local, tp.Remote, reqid)))
	return out
}

func flowAtoB(tp *kerneltest.Topology, dport uint16) conformance.Flow {
	return conformance.Flow{Src: tp.LocalInner, Dst: tp.RemoteInner, Proto: 17, SrcPort: 40001, DstPort: dport}
}

func TestSAKernelRoundTrip(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	needESP(t, b)
	ctx := context.Background()
	c := b.Capabilities()
	v4a, v4b := ma("192.0.2.1"), ma("192.0.2.2")
	var sas []*kernelops.SA
	add := func(sa *kernelops.SA) { sas = append(sas, sa) }
	for _, e := range c.Algorithms.Encryption {
		sa := gcmSA(v4a, v4b, 1)
		info, _ := e.Info()
		bits := 0
		if info.KeyBits != nil {
			bits = info.KeyBits[len(info.KeyBits)-1]
		}
		n, _ := e.KeyLen(bits)
		sa.Encryption = kernelops.Encryption{ID: e, KeyBits: bits}
		if n > 0 {
			sa.Encryption.Key = rnd(n)
		}
		if !info.AEAD {
			sa.Integrity = kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: rnd(32)}
		}
		add(sa)
	}
	for _, i := range c.Algorithms.Integrity {
		sa := gcmSA(v4a, v4b, 2)
		info, _ := i.Info()
		sa.Encryption = kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 256, Key: rnd(32)}
		sa.Integrity = kernelops.Integrity{ID: i, Key: rnd(info.KeyLen)}
		add(sa)
	}
	v6 := gcmSA(ma("2001:db8::1"), ma("2001:db8::2"), 3)
	v6.Mode = kernelops.ModeTransport
	v6.Selector = kernelops.Selector{Src: mp("2001:db8::1/128"), Dst: mp("2001:db8::2/128"), Proto: 6, DstPort: 443}
	v6.ID.Mark = kernelops.Mark{Value: 0x10, Mask: 0xf0}
	add(v6)
	esn := gcmSA(v4a, v4b, 4)
	esn.ESN, esn.ReplayWindow = true, 1024
	esn.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 31000}
	esn.IfID = 0x55
	esn.Lifetime = kernelops.Lifetimes{Soft: kernelops.Limits{Bytes: 1 << 30, Packets: 1 << 20, AddTime: time.Hour, UseTime: time.Minute},
		Hard: kernelops.Limits{Bytes: 1 << 31, Packets: 1 << 21, AddTime: 2 * time.Hour, UseTime: 2 * time.Minute}}
	add(esn)
	if b.d.k.AH {
		add(&kernelops.SA{ID: kernelops.SAID{Src: v4a, Dst: v4b, SPI: nextTestSPI(), Proto: kernelops.ProtoAH},
			Mode: kernelops.ModeTransport, ReplayWindow: 64, Integrity: kernelops.Integrity{ID: iana.IntegHMACSHA1_96, Key: rnd(20)}})
	} else {
		t.Errorf("the VM kernel has no AH")
	}
	if b.d.k.IPComp {
		add(&kernelops.SA{ID: kernelops.SAID{Src: v4a, Dst: v4b, SPI: 0x4242, Proto: kernelops.ProtoIPComp}, Mode: kernelops.ModeTunnel})
	} else {
		t.Errorf("the VM kernel has no IPComp")
	}
	for _, sa := range sas {
		t.Run(sa.ID.String()+" "+sa.Encryption.ID.String()+" "+sa.Integrity.ID.String(), func(t *testing.T) {
			must(t, "add", b.AddSA(ctx, sa))
			e, err := b.GetSA(ctx, sa.ID)
			must(t, "get", err)
			want := *sa
			want.Mark = sa.ID.Mark
			want.Offload = kernelops.Offload{}
			got := e.SA
			if !reflect.DeepEqual(got, want) {
				t.Errorf("read back:\n got %+v\nwant %+v", got, want)
			}
			if e.State != kernelops.SAValid || e.Counters.AddTime.IsZero() {
				t.Errorf("state %v add time %v", e.State, e.Counters.AddTime)
			}
		})
	}
	// UpdateSA moves the NAT-T port (a port float) and the lifetimes.
	up := esn.Clone()
	up.Encap.DstPort = 31001
	up.Lifetime.Hard.AddTime = 3 * time.Hour
	must(t, "update", b.UpdateSA(ctx, up))
	e, err := b.GetSA(ctx, esn.ID)
	must(t, "get", err)
	if e.Encap.DstPort != 31001 || e.Lifetime.Hard.AddTime != 3*time.Hour {
		t.Errorf("update not applied: encap %+v lifetime %+v", e.Encap, e.Lifetime)
	}
	// The dump shows every one of them, with keys.
	n := 0
	for e, err := range b.SAs(ctx) {
		must(t, "dump", err)
		for _, sa := range sas {
			if e.ID == sa.ID {
				n++
				if string(e.Encryption.Key) != string(sa.Encryption.Key) || string(e.Integrity.Key) != string(sa.Integrity.Key) {
					t.Errorf("dump: keys of %v differ", sa.ID)
				}
			}
		}
	}
	if n != len(sas) {
		t.Errorf("dump shows %d of %d SAs", n, len(sas))
	}
}

func TestAllocSPIFill(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	needESP(t, b)
	ctx := context.Background()
	src, dst := ma("192.0.2.2"), ma("192.0.2.1")
	spi, err := b.AllocSPI(ctx, kernelops.SPIRequest{Src: src, Dst: dst, Proto: kernelops.ProtoESP, ReqID: b.Options().ReqIDMin})
	must(t, "alloc", err)
	id := kernelops.SAID{Src: src, Dst: dst, SPI: spi, Proto: kernelops.ProtoESP}
	e, err := b.GetSA(ctx, id)
	must(t, "get larval", err)
	if e.State != kernelops.SALarval {
		t.Errorf("allocated SPI reads back as %v, want larval", e.State)
	}
	// A restarted daemon (no memory of the reservation) still fills it.
	sa := gcmSA(src, dst, b.Options().ReqIDMin)
	sa.ID.SPI = spi
	b.d.setLarval(id, false) // forget, as a restarted daemon would
	must(t, "add on the reservation", b.AddSA(ctx, sa))
	e, err = b.GetSA(ctx, id)
	must(t, "get", err)
	if e.State != kernelops.SAValid || e.Encryption.ID != iana.EncrAESGCM16 {
		t.Errorf("filled SA: state %v %+v", e.State, e.SA)
	}
	wantIs(t, "add again", b.AddSA(ctx, sa), kernelops.ErrExists)
}

// TestTrafficDecryptedByPeer: real ESP between the namespaces: A encrypts,
// B decrypts and its socket gets the datagrams; both SAs count them, and
// the bulk usage read agrees with the dump.
func TestTrafficDecryptedByPeer(t *testing.T) {
	p := newVMPair(t)
	ctx := context.Background()
	out := p.tunnelAtoB(t, 0x4b500010)
	var srv *net.UDPConn
	must(t, "listen in B", kerneltest.Do(p.tp.B, func() (err error) {
		srv, err = listenUDP(netip.AddrPortFrom(p.tp.RemoteInner, 9))
		return
	}))
	defer srv.Close()
	const n, size = 5, 200
	must(t, "send", p.ta.Send(ctx, flowAtoB(p.tp, 9), n, size))
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	for i := range n {
		m, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d not decrypted and delivered: %v", i, err)
		}
		if m != size || from.Addr() != p.tp.LocalInner {
			t.Errorf("datagram of %d bytes from %v", m, from)
		}
	}
	ea, err := p.a.GetSA(ctx, out.ID)
	must(t, "A SA", err)
	eb, err := p.b.GetSA(ctx, out.ID)
	must(t, "B SA", err)
	if ea.Counters.Packets != n || eb.Counters.Packets != n || ea.Counters.Replay.OSeq != n || eb.Counters.Replay.Seq != n {
		t.Errorf("counters: A %d packets oseq %d, B %d packets seq %d; want %d", ea.Counters.Packets, ea.Counters.Replay.OSeq,
			eb.Counters.Packets, eb.Counters.Replay.Seq, n)
	}
	// Last-used: the claim must match what the kernel does, in and out.
	claims := p.a.Capabilities().Has(kernelops.CapLastUsed)
	for side, e := range map[string]*kernelops.SAEntry{"outbound": ea, "inbound": eb} {
		if claims == e.Counters.LastUsed.IsZero() {
			t.Errorf("%s SA: LastUsed %v, but the backend claims last-used = %v", side, e.Counters.LastUsed, claims)
		}
	}
	for u, err := range p.b.Usage(ctx) {
		must(t, "usage", err)
		if u.ID == out.ID && (u.Packets != eb.Counters.Packets || u.Bytes != eb.Counters.Bytes || !u.LastUsed.Equal(eb.Counters.LastUsed)) {
			t.Errorf("usage %+v disagrees with the dump %+v", u, eb.Counters)
		}
	}
}

func TestOffloadRefusedOnVeth(t *testing.T) {
	p := newVMPair(t)
	b := p.a
	ctx := context.Background()
	sup, err := b.OffloadSupport(ctx, p.tp.IfA)
	must(t, "offload support", err)
	if sup.Crypto || sup.Packet || !strings.Contains(sup.Detail, featESP+"=off") {
		t.Fatalf("veth offload support %+v", sup)
	}
	_, err = b.OffloadSupport(ctx, "kp-nothing")
	wantIs(t, "support of a missing device", err, kernelops.ErrNotFound)

	for _, mode := range []kernelops.OffloadMode{kernelops.OffloadPacket, kernelops.OffloadCrypto} {
		sa := gcmSA(p.tp.Local, p.tp.Remote, 7)
		sa.Offload = kernelops.Offload{Device: p.tp.IfA, Mode: mode}
		err := b.AddSA(ctx, sa)
		wantIs(t, mode.String()+" offload on veth", err, kernelops.ErrOffload)
		var oe *kernelops.OffloadError
		if !errors.As(err, &oe) || oe.Device != p.tp.IfA || oe.Mode != mode || oe.Reason == "" {
			t.Fatalf("%s: offload error does not say what failed: %v", mode, err)
		}
		if mode == kernelops.OffloadPacket && !strings.Contains(strings.ToLower(oe.Reason), "offload") {
			t.Errorf("packet offload refusal lacks the kernel's reason: %q", oe.Reason)
		}
		t.Logf("%s refused: %v", mode, err)
		_, gerr := b.GetSA(ctx, sa.ID)
		wantIs(t, "SA after refused offload", gerr, kernelops.ErrNotFound)
	}
	sa := gcmSA(p.tp.Local, p.tp.Remote, 7)
	sa.Offload = kernelops.Offload{Device: p.tp.IfA, Mode: kernelops.OffloadAuto}
	must(t, "auto offload", b.AddSA(ctx, sa))
	if sa.Offload.Active != kernelops.OffloadNone {
		t.Errorf("auto on veth says %s", sa.Offload.Active)
	}
	if _, err := b.GetSA(ctx, sa.ID); err != nil {
		t.Errorf("auto offload SA missing: %v", err)
	}
	sa = gcmSA(p.tp.Local, p.tp.Remote, 7)
	sa.Offload = kernelops.Offload{Device: "kp-nothing", Mode: kernelops.OffloadCrypto}
	wantIs(t, "offload on a missing device", b.AddSA(ctx, sa), kernelops.ErrOffload)
}

// TestMappingEvent: B sends ESP-in-UDP from another port than A's SA
// expects (a NAT rebinding); A's kernel reports the new mapping.
func TestMappingEvent(t *testing.T) {
	p := newVMPair(t)
	ctx := context.Background()
	tp := p.tp
	nat, err := p.a.ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(tp.Local, 4500), Encap: true})
	must(t, "NAT-T socket", err)
	defer nat.Close()
	sub := subscribeAll(t, p.a, kernelops.KindMapping)
	in := gcmSA(tp.Remote, tp.Local, 0x4b500020)
	in.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 4500}
	must(t, "A in SA", p.a.AddSA(ctx, in))
	out := in.Clone()
	out.Encap = &kernelops.Encap{SrcPort: 4501, DstPort: 4500}
	must(t, "B out SA", p.b.AddSA(ctx, out))
	ri, li := netip.PrefixFrom(tp.RemoteInner, 32), netip.PrefixFrom(tp.LocalInner, 32)
	must(t, "B out policy", p.b.AddPolicy(ctx, tunnelPolicy(kernelops.DirOut, ri, li, tp.Remote, tp.Local, 0x4b500020)))
	must(t, "send", p.tb.Send(ctx, conformance.Flow{Src: tp.RemoteInner, Dst: tp.LocalInner, Proto: 17, SrcPort: 40000, DstPort: 9}, 2, 50))
	ev := waitEvent(t, sub, 10*time.Second, func(e *kernelops.MappingEvent) bool { return e.SA.SPI == in.ID.SPI })
	want := kernelops.MappingEvent{SA: in.ID, ReqID: 0x4b500020,
		Old: netip.AddrPortFrom(tp.Remote, 4500), New: netip.AddrPortFrom(tp.Remote, 4501)}
	if *ev != want {
		t.Errorf("mapping\n got %+v\nwant %+v", *ev, want)
	}
}

func TestMigrateEventAndState(t *testing.T) {
	p := newVMPair(t)
	ctx := context.Background()
	tp := p.tp
	out := p.tunnelAtoB(t, 0x4b500030)
	must(t, "send", p.ta.Send(ctx, flowAtoB(tp, 9), 3, 64))
	sub := subscribeAll(t, p.a, kernelops.KindMigrate)
	li, ri := netip.PrefixFrom(tp.LocalInner, 32), netip.PrefixFrom(tp.RemoteInner, 32)
	pid := kernelops.PolicyID{Selector: kernelops.Selector{Src: li, Dst: ri}, Dir: kernelops.DirOut}
	nl, nr := ma("203.0.113.1"), ma("203.0.113.2")
	encap := &kernelops.Encap{SrcPort: 4500, DstPort: 4500}
	must(t, "migrate", p.a.Migrate(ctx, kernelops.Migration{ReqID: 0x4b500030,
		Old: kernelops.Endpoints{Local: tp.Local, Remote: tp.Remote}, New: kernelops.Endpoints{Local: nl, Remote: nr},
		Encap: encap, SAs: []kernelops.SAID{out.ID}, Policies: []kernelops.PolicyID{pid}}))
	ev := waitEvent(t, sub, 10*time.Second, func(e *kernelops.MigrateEvent) bool { return e.Policy.Dir == kernelops.DirOut })
	wantEntry := kernelops.MigrateEntry{Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 0x4b500030,
		Old: kernelops.Endpoints{Local: tp.Local, Remote: tp.Remote}, New: kernelops.Endpoints{Local: nl, Remote: nr}}
	if ev.Policy.Selector != pid.Selector || len(ev.Entries) != 1 || ev.Entries[0] != wantEntry {
		t.Errorf("migrate event %+v", ev)
	}
	nid := out.ID
	nid.Src, nid.Dst = nl, nr
	e, err := p.a.GetSA(ctx, nid)
	must(t, "migrated SA", err)
	// Same keys and sequence numbers: the peer's replay window stays valid.
	if string(e.Encryption.Key) != string(out.Encryption.Key) || e.Counters.Replay.OSeq != 3 || e.Encap == nil || *e.Encap != *encap {
		t.Errorf("migrated SA lost state: oseq %d encap %+v", e.Counters.Replay.OSeq, e.Encap)
	}
}

// TestMigrateEncap: a migration's encapsulation is given as on the
// outbound SA; the inbound SA gets the ports the other way round, moved
// by the kernel with its in policy (XFRM_MSG_MIGRATE) or in software
// without one.
func TestMigrateEncap(t *testing.T) {
	p := newVMPair(t)
	ctx := context.Background()
	tp := p.tp
	encap := &kernelops.Encap{SrcPort: 4500, DstPort: 4600} // local, remote
	for i, withPolicy := range []bool{true, false} {
		reqid := uint32(0x4b500032 + i)
		in := gcmSA(tp.Remote, tp.Local, reqid)
		in.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 4500}
		must(t, "in SA", p.a.AddSA(ctx, in))
		m := kernelops.Migration{ReqID: reqid, Old: kernelops.Endpoints{Local: tp.Local, Remote: tp.Remote},
			New: kernelops.Endpoints{Local: tp.Local, Remote: ma(fmt.Sprintf("203.0.113.%d", 21+i))}, Encap: encap, SAs: []kernelops.SAID{in.ID}}
		if withPolicy {
			li, ri := netip.PrefixFrom(tp.LocalInner, 32), netip.PrefixFrom(tp.RemoteInner, 32)
			pol := tunnelPolicy(kernelops.DirIn, ri, li, tp.Remote, tp.Local, reqid)
			must(t, "in policy", p.a.AddPolicy(ctx, pol))
			m.Policies = []kernelops.PolicyID{pol.ID()}
		}
		must(t, "migrate", p.a.Migrate(ctx, m))
		nid := in.ID
		nid.Src = m.New.Remote
		e, err := p.a.GetSA(ctx, nid)
		must(t, "migrated in SA", err)
		if want := (kernelops.Encap{SrcPort: 4600, DstPort: 4500}); e.Encap == nil || *e.Encap != want {
			t.Errorf("policy %v: inbound SA encap %+v after migrate, want %+v", withPolicy, e.Encap, want)
		}
	}
}

// TestMigrateWithoutPolicy moves an SA no policy covers: the software
// path re-installs it with its sequence numbers and counters.
func TestMigrateWithoutPolicy(t *testing.T) {
	p := newVMPair(t)
	ctx := context.Background()
	tp := p.tp
	out := p.tunnelAtoB(t, 0x4b500031)
	must(t, "send", p.ta.Send(ctx, flowAtoB(tp, 9), 4, 64))
	nl, nr := ma("203.0.113.11"), ma("203.0.113.12")
	must(t, "migrate", p.a.Migrate(ctx, kernelops.Migration{ReqID: 0x4b500031,
		Old: kernelops.Endpoints{Local: tp.Local, Remote: tp.Remote}, New: kernelops.Endpoints{Local: nl, Remote: nr},
		SAs: []kernelops.SAID{out.ID}}))
	nid := out.ID
	nid.Src, nid.Dst = nl, nr
	e, err := p.a.GetSA(ctx, nid)
	must(t, "moved SA", err)
	if e.Counters.Replay.OSeq != 4 || e.Counters.Packets != 4 || string(e.Encryption.Key) != string(out.Encryption.Key) {
		t.Errorf("moved SA: oseq %d packets %d", e.Counters.Replay.OSeq, e.Counters.Packets)
	}
	_, err = p.a.GetSA(ctx, out.ID)
	wantIs(t, "old SA", err, kernelops.ErrNotFound)
}

func TestSyncStateAndEvents(t *testing.T) {
	p := newVMPair(t)
	ctx := context.Background()
	tp := p.tp
	if p.a.d.k.HZSource != "measured through XFRMA_ETIMER_THRESH" {
		t.Errorf("HZ %d from %s, want it measured", p.a.d.k.HZ, p.a.d.k.HZSource)
	}
	// ESN state round trip, 64-bit sequence numbers and a bitmap.
	esn := gcmSA(tp.Remote, tp.Local, 0x4b500040)
	esn.ESN, esn.ReplayWindow = true, 64
	must(t, "ESN SA", p.a.AddSA(ctx, esn))
	st := kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 1<<32 + 10, Seq: 5<<32 + 3, Window: 64, Bitmap: []uint32{0x5, 0x1}},
		Bytes: 1000, Packets: 10, AddTime: time.Unix(1_700_000_000, 0)}
	must(t, "set", p.a.SetSyncState(ctx, esn.ID, st))
	got, err := p.a.GetSyncState(ctx, esn.ID)
	must(t, "get", err)
	if !reflect.DeepEqual(got.Replay, st.Replay) || got.Bytes != 1000 || got.Packets != 10 || !got.AddTime.Equal(st.AddTime) {
		t.Errorf("ESN sync state\n got %+v\nwant %+v", got, st)
	}
	wantIs(t, "bitmap too long", p.a.SetSyncState(ctx, esn.ID, kernelops.SyncState{Replay: kernelops.ReplayState{Bitmap: make([]uint32, 3)}}),
		kernelops.ErrInvalid)

	// Replay threshold, then the timer (armed by the replay event).
	out := p.tunnelAtoB(t, 0x4b500041)
	sub := subscribeAll(t, p.a, kernelops.KindSync)
	must(t, "thresholds", p.a.SetSyncThresholds(ctx, out.ID, kernelops.SyncThresholds{ReplayDiff: 3, Timer: 500 * time.Millisecond}))
	must(t, "send", p.ta.Send(ctx, flowAtoB(tp, 9), 3, 64))
	ev := waitEvent(t, sub, 10*time.Second, func(e *kernelops.SyncEvent) bool { return e.SA.SPI == out.ID.SPI })
	// The kernel reports from its sequence-number check, before it counts
	// the packet that crossed the threshold.
	if ev.Reason != kernelops.SyncReplay || ev.State.Replay.OSeq != 3 || ev.ReqID != 0x4b500041 || ev.State.Packets < 2 {
		t.Errorf("replay sync event %+v", ev)
	}
	must(t, "send", p.ta.Send(ctx, flowAtoB(tp, 9), 1, 64))
	ev = waitEvent(t, sub, 10*time.Second, func(e *kernelops.SyncEvent) bool { return e.SA.SPI == out.ID.SPI })
	if ev.Reason != kernelops.SyncTimer || ev.State.Replay.OSeq != 4 {
		t.Errorf("timer sync event %+v", ev)
	}
	// Thresholds read back through GETAE, the timer in the kernel's 100 ms.
	ae, err := p.a.d.getAE(ctx, out.ID)
	must(t, "GETAE", err)
	if ae.ReplayDiff != 3 || ae.ETimer != 5 {
		t.Errorf("thresholds read back as diff %d timer %d x 100 ms", ae.ReplayDiff, ae.ETimer)
	}
}

func TestFlushSAsLeavesForeign(t *testing.T) {
	b, ns := fresh(t, kernelops.Options{})
	needESP(t, b)
	ctx := context.Background()
	ipOut(t, ns, "xfrm", "state", "add", "src", "192.0.2.8", "dst", "192.0.2.9", "proto", "esp", "spi", "0x100", "reqid", "5",
		"mode", "tunnel", "aead", "rfc4106(gcm(aes))", hexKey(20), "128")
	ipOut(t, ns, "xfrm", "state", "add", "src", "192.0.2.8", "dst", "192.0.2.9", "proto", "esp", "spi", "0x101",
		"mode", "transport", "enc", "cbc(aes)", hexKey(16), "auth-trunc", "hmac(sha256)", hexKey(32), "128")
	own := gcmSA(ma("192.0.2.1"), ma("192.0.2.2"), b.Options().ReqIDMin+9)
	must(t, "own SA", b.AddSA(ctx, own))
	spi, err := b.AllocSPI(ctx, kernelops.SPIRequest{Src: ma("192.0.2.2"), Dst: ma("192.0.2.1"), Proto: kernelops.ProtoESP, ReqID: b.Options().ReqIDMax})
	must(t, "own reservation", err)
	must(t, "flush", b.FlushSAs(ctx))
	var left []string
	for e, err := range b.SAs(ctx) {
		must(t, "dump", err)
		left = append(left, fmtSPI(e.ID.SPI))
	}
	if !reflect.DeepEqual(left, []string{"0x00000101", "0x00000100"}) && !reflect.DeepEqual(left, []string{"0x00000100", "0x00000101"}) {
		t.Errorf("after the flush: %v, want exactly the two foreign SAs (own %s, reserved %s)", left, fmtSPI(own.ID.SPI), fmtSPI(spi))
	}
	// A restarted keyplane cleans its own and only its own.
	must(t, "own SA", b.AddSA(ctx, own))
	second := openIn(t, ns, kernelops.Options{Params: map[string]string{ParamCleanup: "owned"}})
	n := 0
	for e, err := range second.SAs(ctx) {
		must(t, "dump", err)
		if e.ID == own.ID {
			t.Errorf("stale own SA survived the restart cleanup")
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d SAs after the restart cleanup, want the 2 foreign ones", n)
	}
}

// TestBatchSAErrorsNameTheirSA: in a batch of SAs spanning several chunks,
// the SAs the kernel refuses fail alone, each with a typed error naming
// it; every other SA is installed.
func TestBatchSAErrorsNameTheirSA(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	needESP(t, b)
	ctx := context.Background()
	key := make([]byte, 20)
	const n = 2500 // three chunks
	ops := make([]kernelops.Op, 0, n+2)
	for i := range n {
		ops = append(ops, kernelops.Op{Kind: kernelops.OpAddSA, SA: benchSA(i, b.Options().ReqIDMin, key)})
	}
	dup := benchSA(1500, b.Options().ReqIDMin, key)    // in the second chunk
	missing := benchSA(n+7, b.Options().ReqIDMin, key) // never added
	ops = append(ops, kernelops.Op{Kind: kernelops.OpAddSA, SA: dup}, kernelops.Op{Kind: kernelops.OpUpdateSA, SA: missing})
	err := b.Apply(ctx, ops)
	var be *kernelops.BatchError
	if !errors.As(err, &be) || be.Failed != 2 || be.Total != n+2 {
		t.Fatalf("batch error %v, want 2 of %d failed", err, n+2)
	}
	for i := range n {
		if ops[i].Err != nil {
			t.Fatalf("op %d failed: %v", i, ops[i].Err)
		}
	}
	for _, c := range []struct {
		what string
		err  error
		sa   *kernelops.SA
		want error
	}{{"duplicate", ops[n].Err, dup, kernelops.ErrExists}, {"update of a missing SA", ops[n+1].Err, missing, kernelops.ErrNotFound}} {
		wantIs(t, c.what, c.err, c.want)
		var ke *kernelops.Error
		errors.As(c.err, &ke)
		if ke.Object != c.sa.ID.String() || ke.Op == "" {
			t.Errorf("%s: error %q names %q in op %q, want %s", c.what, c.err, ke.Object, ke.Op, c.sa.ID)
		}
	}
	got := 0
	for _, err := range b.SAs(ctx) {
		must(t, "dump", err)
		got++
	}
	if got != n {
		t.Errorf("%d SAs installed, want %d", got, n)
	}
}
