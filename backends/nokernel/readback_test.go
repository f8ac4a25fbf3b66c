package nokernel_test

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

// TestSAReadsBack checks that GetSA and the dump return every field an
// SA was added and updated with, for a plain SA and one with every
// rarely set field (the model keeps those apart).
func TestSAReadsBack(t *testing.T) {
	b, clk := model(t, map[string]string{"interfaces": "eth0=192.0.2.1/24", "offload": "eth0=crypto+packet"})
	plain := gcmSA(local, remote, 1)
	plain.Dir = kernelops.DirOut
	plain.ReplayWindow = 0
	plain.Lifetime.Soft.AddTime, plain.Lifetime.Hard.AddTime = time.Minute, time.Hour

	full := &kernelops.SA{
		ID:       kernelops.SAID{Src: remote, Dst: local, SPI: 0x4242, Proto: kernelops.ProtoESP, Mark: kernelops.Mark{Value: 7, Mask: 0xff}},
		Mode:     kernelops.ModeTransport,
		ReqID:    2,
		Selector: kernelops.Selector{Src: host(inner2), Dst: host(inner1), Proto: 6, DstPort: 443},
		Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 256,
			Key: kernelops.Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}},
		Integrity:    kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: make(kernelops.Key, 32)},
		ReplayWindow: 200,
		ESN:          true,
		Encap:        &kernelops.Encap{SrcPort: 4500, DstPort: 4501, OrigAddr: netip.MustParseAddr("203.0.113.9")},
		Lifetime:     kernelops.Lifetimes{Soft: kernelops.Limits{Bytes: 1 << 40, Packets: 1 << 30}, Hard: kernelops.Limits{Bytes: 1 << 41, UseTime: time.Hour}},
		Mark:         kernelops.Mark{Value: 9, Mask: 0xf},
		IfID:         17,
		Dir:          kernelops.DirIn,
		Offload:      kernelops.Offload{Device: "eth0", Mode: kernelops.OffloadCrypto},
	}
	full.Integrity.Key[31] = 0xee
	// A time in another location is kept apart from the SA's stamps.
	added := clk.Now().Add(-time.Minute + 5).In(time.FixedZone("elsewhere", 5400))
	full.Sync = &kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 1 << 33, Seq: 1<<33 + 5, Bitmap: []uint32{1, 2, 3, 4, 5, 6, 0xffff}},
		Bytes: 1000, Packets: 10, AddTime: added, UseTime: added.Add(time.Second)}

	for _, sa := range []*kernelops.SA{plain, full} {
		want := *sa.Clone()
		want.Sync = nil
		noErr(t, "add", b.AddSA(ctx(t), sa))
		want.Offload.Active = sa.Offload.Active
		got, err := b.GetSA(ctx(t), sa.ID)
		noErr(t, "get", err)
		if !reflect.DeepEqual(got.SA, want) {
			t.Errorf("reads back\n%+v\nwant\n%+v", got.SA, want)
		}
		wantC := kernelops.Counters{AddTime: clk.Now(), Replay: kernelops.ReplayState{Window: sa.ReplayWindow}}
		if sa == full {
			// The bitmap's last word is cut to the window (200 = 6 words and 8 bits).
			wantC = kernelops.Counters{Bytes: 1000, Packets: 10, AddTime: added, FirstUse: added.Add(time.Second),
				Replay: kernelops.ReplayState{OSeq: 1 << 33, Seq: 1<<33 + 5, Window: 200, Bitmap: []uint32{1, 2, 3, 4, 5, 6, 0xff}}}
		}
		normSA(got)
		if !reflect.DeepEqual(got.Counters, wantC) {
			t.Errorf("counters\n%+v\nwant\n%+v", got.Counters, wantC)
		}
		for d, err := range b.SAs(ctx(t)) {
			noErr(t, "dump", err)
			normSA(d)
			if d.ID == sa.ID && (!reflect.DeepEqual(d.SA, want) || !reflect.DeepEqual(d.Counters, wantC)) {
				t.Errorf("dump reads back\n%+v\nwant\n%+v", d.SA, want)
			}
		}
	}

	// An update replaces the selector, encapsulation ports, lifetimes
	// and offload.
	up := *full.Clone()
	up.Sync = nil
	up.Selector = kernelops.Selector{}
	up.Encap = &kernelops.Encap{SrcPort: 1, DstPort: 2}
	up.Lifetime = kernelops.Lifetimes{}
	up.Offload = kernelops.Offload{}
	noErr(t, "update", b.UpdateSA(ctx(t), &up))
	got, err := b.GetSA(ctx(t), up.ID)
	noErr(t, "get", err)
	normSA(got)
	if !reflect.DeepEqual(got.SA, up) {
		t.Errorf("updated SA reads back\n%+v\nwant\n%+v", got.SA, up)
	}
}

// normSA makes empty keys and bitmaps nil: whether an empty one reads
// back nil depends on the slice the caller's entry held.
func normSA(e *kernelops.SAEntry) {
	if len(e.Encryption.Key) == 0 {
		e.Encryption.Key = nil
	}
	if len(e.Integrity.Key) == 0 {
		e.Integrity.Key = nil
	}
	if len(e.Counters.Replay.Bitmap) == 0 {
		e.Counters.Replay.Bitmap = nil
	}
}

// TestPolicyReadsBack checks that GetPolicy and the dump return every
// field a policy was added with, with no template, one, or two, and that
// Migrate moves templates of either kind.
func TestPolicyReadsBack(t *testing.T) {
	b, clk := model(t, nil)
	v6 := netip.MustParsePrefix("2001:db8::/48")
	one := tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 1)
	one.Templates[0].SPI, one.Templates[0].Optional = 0x99, true
	two := &kernelops.Policy{Selector: kernelops.Selector{Src: v6, Dst: netip.MustParsePrefix("2001:db8:1::1/128"), Proto: 58, SrcPort: 128},
		Dir: kernelops.DirIn, Action: kernelops.ActionIPsec, Priority: 5, Mark: kernelops.Mark{Value: 3, Mask: 3}, IfID: 8,
		Lifetime: kernelops.Lifetimes{Hard: kernelops.Limits{AddTime: time.Hour}},
		Templates: []kernelops.Template{
			{Src: remote, Dst: local, Proto: kernelops.ProtoAH, Mode: kernelops.ModeTunnel, ReqID: 2},
			{Proto: kernelops.ProtoESP, Mode: kernelops.ModeTransport, ReqID: 2},
		}}
	none := &kernelops.Policy{Selector: kernelops.Selector{Proto: 17, DstPort: 500}, Dir: kernelops.DirFwd, Action: kernelops.ActionBlock}
	for _, p := range []*kernelops.Policy{one, two, none} {
		noErr(t, "add", b.AddPolicy(ctx(t), p))
		want := *p.Clone()
		want.Priority = kernelops.EffectivePriority(p)
		got, err := b.GetPolicy(ctx(t), p.ID())
		noErr(t, "get", err)
		if !reflect.DeepEqual(got.Policy, want) || !got.AddTime.Equal(clk.Now()) || !got.UseTime.IsZero() {
			t.Errorf("reads back\n%+v (added %v, used %v)\nwant\n%+v", got.Policy, got.AddTime, got.UseTime, want)
		}
		n := 0
		for d, err := range b.Policies(ctx(t)) {
			noErr(t, "dump", err)
			if d.ID() == p.ID() {
				n++
				got := d.Policy
				if len(got.Templates) == 0 {
					got.Templates = nil // the reused entry keeps its slice
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("dump reads back\n%+v\nwant\n%+v", d.Policy, want)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s dumped %d times", p.ID(), n)
		}
	}

	nl, nr := netip.MustParseAddr("192.0.2.50"), netip.MustParseAddr("198.51.100.50")
	noErr(t, "migrate", b.Migrate(ctx(t), kernelops.Migration{Old: kernelops.Endpoints{Local: local, Remote: remote},
		New: kernelops.Endpoints{Local: nl, Remote: nr}, Policies: []kernelops.PolicyID{one.ID(), two.ID()}}))
	g1, err := b.GetPolicy(ctx(t), one.ID())
	noErr(t, "get", err)
	g2, err := b.GetPolicy(ctx(t), two.ID())
	noErr(t, "get", err)
	if t0 := g1.Templates[0]; t0.Src != nl || t0.Dst != nr || t0.SPI != 0x99 || !t0.Optional {
		t.Errorf("migrated template %+v", t0)
	}
	if len(g2.Templates) != 2 || g2.Templates[0].Src != nr || g2.Templates[0].Dst != nl || g2.Templates[1] != two.Templates[1] {
		t.Errorf("migrated templates %+v", g2.Templates)
	}
}
