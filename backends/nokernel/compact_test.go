package nokernel

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/keyplane/keyplane/kernelops"
)

// TestSAEntrySize: an SA's entry fits the allocator's 192-octet size
// class, with no padding left (the next class is 208). Its lifetimes are
// the front end's; a field that must be added goes in saExtra when few
// SAs need it, or displaces another.
func TestSAEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(saEntry{}); n > 192 {
		t.Errorf("saEntry is %d octets, over the 192-octet size class", n)
	}
}

// TestPolEntrySize: a policy's entry fits the allocator's 144-octet size
// class (the next is 160), with no padding left: its flags share one
// octet; a field that must be added goes in polExtra when few policies
// need it, or displaces another.
func TestPolEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(polEntry{}); n > 144 {
		t.Errorf("polEntry is %d octets, over the 144-octet size class", n)
	}
}

// TestStamps checks that a time reads back as the time without its
// monotonic reading, exactly (==, so with its location), whether it fits
// a stamp or is kept apart.
func TestStamps(t *testing.T) {
	open := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	b := &model{epoch: epochOf(open)}
	now := time.Now()
	cases := []struct {
		name  string
		t     time.Time
		apart bool
	}{
		{"zero", time.Time{}, false},
		{"open", open, false},
		{"later", open.Add(time.Hour + 7), false},
		{"earlier", open.Add(-100 * 24 * time.Hour), false},
		{"the epoch", open.Add(-time.Nanosecond), true},
		{"another location", open.In(time.FixedZone("x", 3600)), true},
		{"local", now, now.Location() != time.UTC},
		{"300 years on", open.AddDate(300, 0, 0), true},
		{"year 1", time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), true},
	}
	for _, c := range cases {
		want := c.t.Round(0)
		s, ok := b.toStamp(c.t)
		if ok == c.apart {
			t.Errorf("%s: fits a stamp %v, want %v", c.name, ok, !c.apart)
		}
		if ok && (s == stampApart || b.fromStamp(s) != want) {
			t.Errorf("%s: stamp %d reads back %v, want %v", c.name, s, b.fromStamp(s), want)
		}
		e := &saEntry{}
		b.setSATime(e, tLastUsed, c.t)
		if got := b.saTime(e, tLastUsed); got != want {
			t.Errorf("%s: SA time reads back %v, want %v", c.name, got, want)
		}
		p := &polEntry{}
		b.setPolTime(p, pUse, c.t)
		if got := b.polTime(p, pUse); got != want {
			t.Errorf("%s: policy time reads back %v, want %v", c.name, got, want)
		}
		if (e.x != nil) != c.apart || (p.x != nil) != c.apart {
			t.Errorf("%s: extra part made %v/%v, want %v", c.name, e.x != nil, p.x != nil, c.apart)
		}
	}
}

// TestPolicySelectorForm checks that a selector reads back exactly from
// its compact form, prefixes of every kind included.
func TestPolicySelectorForm(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1")
	prefixes := []netip.Prefix{
		{},
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("10.1.2.3/32"),
		netip.MustParsePrefix("0.0.0.0/0"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("::/0"),
		netip.MustParsePrefix("::ffff:10.0.0.1/128"),
		netip.PrefixFrom(v6, 128),
		netip.PrefixFrom(v6.WithZone("eth0"), 64),             // PrefixFrom drops the zone
		netip.PrefixFrom(v6, 129),                             // invalid, address kept
		netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 24), // not masked
	}
	for _, src := range prefixes {
		for _, dst := range prefixes {
			sel := kernelops.Selector{Src: src, Dst: dst, Proto: 58, SrcPort: 135, DstPort: 7}
			var e polEntry
			e.setSelector(sel)
			if got := e.selector(); got != sel {
				t.Errorf("selector %#v reads back %#v", sel, got)
			}
		}
	}
}

// TestSADChains runs the SAD's indexes with every key on one chain
// against a plain list: SAs of one SPI under several marks, several
// reqids, removal in random order.
func TestSADChains(t *testing.T) {
	for _, collide := range []bool{false, true} {
		var s sad
		s.init()
		s.collide = collide
		rnd := rand.New(rand.NewPCG(1, 2))
		dsts := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
		var ref []*saEntry
		check := func() {
			t.Helper()
			if s.n != len(ref) || len(s.all()) != len(ref) {
				t.Fatalf("collide %v: %d SAs counted, %d listed, want %d", collide, s.n, len(s.all()), len(ref))
			}
			for _, e := range ref {
				if got := s.find(e.said()); got != e {
					t.Fatalf("collide %v: find %s: %p, want %p", collide, e.said(), got, e)
				}
				// The oldest SA of the key whose mark rule takes e's value.
				var want *saEntry
				for _, o := range ref {
					if o.key() == e.key() && e.mark.Value&o.mark.Mask == o.mark.Value && (want == nil || o.order < want.order) {
						want = o
					}
				}
				if got := s.findByMark(e.key(), e.mark.Value); got != want {
					t.Fatalf("collide %v: findByMark %s: %p, want %p", collide, e.said(), got, want)
				}
				var reqs []*saEntry
				for x := range s.byReq(e.reqID) {
					reqs = append(reqs, x)
				}
				for _, o := range ref {
					if (o.reqID == e.reqID) != slices.Contains(reqs, o) {
						t.Fatalf("collide %v: reqid %d lists %v", collide, e.reqID, reqs)
					}
				}
			}
			inUse := 0
			for _, a := range s.alloc {
				inUse += a.InUse()
			}
			keys := map[spiKey]bool{}
			for _, e := range ref {
				keys[e.key()] = true
			}
			if inUse != len(keys) {
				t.Fatalf("collide %v: %d SPIs reserved, want %d", collide, inUse, len(keys))
			}
		}
		for i := range 200 {
			id := kernelops.SAID{Dst: dsts[rnd.IntN(2)], SPI: 0x100 + uint32(rnd.IntN(20)), Proto: kernelops.ProtoESP,
				Mark: kernelops.Mark{Value: uint32(rnd.IntN(3)), Mask: 0xff}}
			if rnd.IntN(4) == 0 {
				id.Mark = kernelops.Mark{}
			}
			if s.find(id) != nil {
				continue
			}
			e := &saEntry{reqID: uint32(rnd.IntN(5))}
			e.setID(id)
			s.insert(e, false)
			ref = append(ref, e)
			if i%3 == 0 && len(ref) > 0 {
				j := rnd.IntN(len(ref))
				s.unlink(ref[j])
				ref = slices.Delete(ref, j, j+1)
			}
			check()
		}
		for len(ref) > 0 {
			j := rnd.IntN(len(ref))
			s.unlink(ref[j])
			ref = slices.Delete(ref, j, j+1)
			check()
		}
		if len(s.bySPI) != 0 || len(s.byReqID) != 0 || len(s.alloc) != 0 {
			t.Fatalf("collide %v: empty SAD keeps %d/%d/%d map entries", collide, len(s.bySPI), len(s.byReqID), len(s.alloc))
		}
	}
}

// TestAddrForm checks that an address reads back exactly (==) through an
// SA entry's ID and a policy entry's template, its zone kept apart.
func TestAddrForm(t *testing.T) {
	for _, s := range []string{"", "0.0.0.0", "192.0.2.1", "255.255.255.255", "::", "::1", "2001:db8::1",
		"::ffff:192.0.2.1", "fe80::1%eth0", "fe80::1%1", "ff02::1%x"} {
		var a netip.Addr
		if s != "" {
			a = netip.MustParseAddr(s)
		}
		// The compact form alone is internal/caddr's TestRoundTrip, on
		// these addresses; here through an SA's ID and a policy's
		// template, which keep zones apart themselves.
		id := kernelops.SAID{Src: a, Dst: a, SPI: 1, Proto: kernelops.ProtoESP}
		var e saEntry
		e.setID(id)
		if got := e.said(); got != id {
			t.Errorf("SA ID %v reads back %v", id, got)
		}
		if (e.x != nil) != (a.Zone() != "") {
			t.Errorf("%q: extra part made %v", s, e.x != nil)
		}
		tm := []kernelops.Template{{Src: a, Dst: a, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 3}}
		var p polEntry
		p.setTemplates(tm)
		var one [1]kernelops.Template
		if got := p.templates(&one); !slices.Equal(got, tm) {
			t.Errorf("template %v reads back %v", tm, got)
		}
	}
}
