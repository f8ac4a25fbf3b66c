package ike

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sel(src, dst string) kernelops.Selector {
	return kernelops.Selector{Src: netip.MustParsePrefix(src), Dst: netip.MustParsePrefix(dst)}
}

// TestChooseReqID: the allocation decision, one row per rule.
func TestChooseReqID(t *testing.T) {
	wide := reqidKey{child: "gw", sels: selectorsKey([]kernelops.Selector{sel("10.2.0.0/16", "10.1.0.0/16")})}
	narrow := reqidKey{child: "gw", sels: selectorsKey([]kernelops.Selector{sel("10.2.0.1/32", "10.1.0.1/32")})}
	// In use: 100 by gw's wide key (its trap), 200 by child "other", 300
	// by gw for another key (a rekey's old child narrowed elsewhere).
	keys := map[reqidKey]uint32{wide: 100}
	users := map[uint32][]reqidUser{100: {{"gw", 1}}, 200: {{"other", 1}}, 300: {{"gw", 1}}}
	byKey := func(k reqidKey) (uint32, bool) { r, ok := keys[k]; return r, ok }
	usersOf := func(r uint32) []reqidUser { return users[r] }
	for _, tc := range []struct {
		name    string
		ask     reqidAsk
		want    uint32
		wantSrc reqidSource
	}{
		{"configured wins over everything", reqidAsk{configured: 7, pre: 300, keep: true, key: wide}, 7, reqidConfigured},
		{"a rekey keeps its child's reqid", reqidAsk{pre: 300, keep: true, key: wide}, 300, reqidKept},
		{"a rekey whose reqid another child name holds does not", reqidAsk{pre: 200, keep: true, key: narrow}, 0, reqidFresh},
		{"the same key shares (acquire with the trap's selectors)", reqidAsk{pre: 100, key: wide}, 100, reqidShared},
		{"a narrowed acquire does not take the trap's", reqidAsk{pre: 100, key: narrow}, 0, reqidFresh},
		{"the child's own, free, is reused (provisional, HA record)", reqidAsk{pre: 400, key: narrow}, 400, reqidReused},
		{"the same key beats the child's own", reqidAsk{pre: 400, key: wide}, 100, reqidShared},
		{"the child's own, held by another name, is not reused", reqidAsk{pre: 200, key: narrow}, 0, reqidFresh},
		{"nothing known: fresh", reqidAsk{key: narrow}, 0, reqidFresh},
		{"keep without a reqid: by key", reqidAsk{keep: true, key: wide}, 100, reqidShared},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, src := chooseReqID(tc.ask, byKey, usersOf)
			assert.Equal(t, tc.wantSrc, src, "source")
			assert.Equal(t, tc.want, r, "reqid")
		})
	}
}

// TestSelectorsKey: the same set in another order is the same key;
// another set, or one more selector, is not.
func TestSelectorsKey(t *testing.T) {
	a, b, c := sel("10.1.0.1/32", "10.2.0.1/32"), sel("10.1.0.2/32", "10.2.0.2/32"), sel("10.1.0.0/24", "10.2.0.0/24")
	assert.Equal(t, selectorsKey([]kernelops.Selector{a, b}), selectorsKey([]kernelops.Selector{b, a}))
	assert.NotEqual(t, selectorsKey([]kernelops.Selector{a}), selectorsKey([]kernelops.Selector{b}))
	assert.NotEqual(t, selectorsKey([]kernelops.Selector{a}), selectorsKey([]kernelops.Selector{a, b}))
	assert.NotEqual(t, selectorsKey([]kernelops.Selector{c}), selectorsKey([]kernelops.Selector{a}))
	p := a
	p.Proto, p.DstPort = 6, 443
	assert.NotEqual(t, selectorsKey([]kernelops.Selector{a}), selectorsKey([]kernelops.Selector{p}))
}

// TestReqIDTable: a trap child and the children narrowed from its
// configuration towards one peer, as the engine takes and releases
// their reqids; the index check agrees at each step.
func TestReqIDTable(t *testing.T) {
	e := &Engine{reqids: newReqIDTable(0, 0), log: slog.New(slog.DiscardHandler)}
	gw := &config.Child{Name: "gw"}
	marked := &config.Child{Name: "gw", MarkOut: kernelops.Mark{Value: 7, Mask: 0xffffffff}}
	wide := []kernelops.Selector{sel("10.2.0.0/16", "10.1.0.0/16")}
	trap := e.takeTrapReqID(gw, wide)
	assert.Equal(t, kernelops.DefaultReqIDMin+1, trap, "the first reqid after the range's first")
	assert.Equal(t, "gw", e.childNameOf(trap), "an acquire finds the trap's child")

	child := func(cfg *config.Child, pre uint32, keep bool, s ...kernelops.Selector) *childSA {
		ch := &childSA{e: e, cfg: cfg, reqid: pre, keepReqID: keep}
		for _, x := range s {
			ch.localTS = append(ch.localTS, tsRange{start: x.Src.Addr(), end: x.Src.Addr(), eport: 0xffff})
			ch.remoteTS = append(ch.remoteTS, tsRange{start: x.Dst.Addr(), end: x.Dst.Addr(), eport: 0xffff})
		}
		if len(s) == 0 {
			ch.localTS = []tsRange{{start: netip.MustParseAddr("10.2.0.0"), end: netip.MustParseAddr("10.2.255.255"), eport: 0xffff}}
			ch.remoteTS = []tsRange{{start: netip.MustParseAddr("10.1.0.0"), end: netip.MustParseAddr("10.1.255.255"), eport: 0xffff}}
		}
		return ch
	}
	held := map[*childSA]bool{}
	take := func(ch *childSA) uint32 {
		e.takeChildReqID(ch)
		held[ch] = true
		return ch.reqid
	}
	check := func() {
		t.Helper()
		// reqidIndexErr counts the users among e.sas' children.
		sa := &ikeSA{}
		for ch := range held {
			if ch.reqidHeld {
				sa.children = append(sa.children, ch)
			}
		}
		e.sas = map[uint64]*ikeSA{1: sa}
		require.Empty(t, e.reqidIndexErr())
	}

	acq := take(child(gw, trap, false))
	assert.Equal(t, trap, acq, "an acquire's child with the trap's selectors keeps the trap's reqid")
	one := child(gw, trap, false, sel("10.2.0.1/32", "10.1.0.1/32"))
	two := child(gw, e.reqids.provisional(), false, sel("10.2.0.2/32", "10.1.0.2/32"))
	r1, r2 := take(one), take(two)
	assert.NotEqual(t, trap, r1, "narrowed: not the trap's")
	assert.NotEqual(t, r1, r2, "two selector sets, two reqids")
	check()
	dup := take(child(gw, 0, false, sel("10.1.0.1/32", "10.2.0.1/32")))
	assert.NotEqual(t, r1, dup, "the reverse selectors are another set")
	same := take(child(gw, 0, false, sel("10.2.0.1/32", "10.1.0.1/32")))
	assert.Equal(t, r1, same, "one set (both ends initiated at once): one reqid")
	m := take(child(marked, 0, false, sel("10.2.0.1/32", "10.1.0.1/32")))
	assert.NotEqual(t, r1, m, "another mark, another reqid")
	ifid := take(child(&config.Child{Name: "gw", IfIDIn: 9, IfIDOut: 9}, 0, false, sel("10.2.0.1/32", "10.1.0.1/32")))
	assert.NotEqual(t, r1, ifid, "another if_id, another reqid")
	assert.NotEqual(t, m, ifid)
	cfgd := take(child(&config.Child{Name: "fixed", ReqID: 42}, 0, false))
	assert.Equal(t, uint32(42), cfgd, "configured: as is")
	check()

	// A rekey keeps its child's reqid even with other selectors.
	rk := child(gw, r2, true, sel("10.2.0.3/32", "10.1.0.3/32"))
	assert.Equal(t, r2, take(rk))
	e.releaseChildReqID(two)
	check()
	assert.Equal(t, r2, rk.reqid)
	assert.NotNil(t, e.reqids.byReqID[r2], "the rekeyed child still holds it")
	e.releaseChildReqID(rk)
	e.releaseChildReqID(rk) // twice: no effect
	assert.Nil(t, e.reqids.byReqID[r2], "its last user gone, the reqid goes back")
	check()

	// The trap goes (a reload) while its acquired child stays.
	e.releaseTrapReqID("gw")
	assert.Equal(t, "gw", e.childNameOf(trap))
	e.releaseChildReqID(acqChild(held, trap))
	assert.Equal(t, "", e.childNameOf(trap))
	check()

	// An HA record's reqid is registered, so no later allocation takes it.
	restored := child(gw, kernelops.DefaultReqIDMin+1000, false, sel("10.2.0.9/32", "10.1.0.9/32"))
	assert.Equal(t, kernelops.DefaultReqIDMin+1000, take(restored))
	e.reqids.next = kernelops.DefaultReqIDMin + 1000
	assert.NotEqual(t, kernelops.DefaultReqIDMin+1000, e.reqids.fresh())
	check()

	// Behind the index's back: the check notices.
	e.reqids.byReqID[9] = &reqidEntry{users: []reqidUser{{"z", 1}}}
	assert.NotEmpty(t, e.reqidIndexErr())
}

func acqChild(held map[*childSA]bool, r uint32) *childSA {
	for ch := range held {
		if ch.reqidHeld && ch.reqid == r {
			return ch
		}
	}
	return nil
}

// TestReqIDRange: fresh reqids stay in the owned range (its first one
// left out), reuse numbers given back, and go above it only when every
// one in it is in use.
func TestReqIDRange(t *testing.T) {
	tb := newReqIDTable(100, 103) // 101..103
	var got []uint32
	for i := range 3 {
		r, _ := tb.take(reqidAsk{key: reqidKey{child: fmt.Sprint(i)}})
		got = append(got, r)
	}
	assert.Equal(t, []uint32{101, 102, 103}, got)
	r, _ := tb.take(reqidAsk{key: reqidKey{child: "over"}})
	assert.Equal(t, uint32(104), r, "the range full: above it")
	tb.drop(102, "1")
	r, _ = tb.take(reqidAsk{key: reqidKey{child: "back"}})
	assert.Equal(t, uint32(102), r, "a freed one is found again")
	assert.Equal(t, 3, tb.inRange)
}

// BenchmarkReqIDLookup: what an acquire's lookup of its child costs with
// -children configured trap children: a scan of every trap (what it did
// before the reqid index, how=scan) against the index (how=index).
func BenchmarkReqIDLookup(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		e := &Engine{reqids: newReqIDTable(0, 0)}
		wide := []kernelops.Selector{sel("10.2.0.0/16", "10.1.0.0/16")}
		for i := range n {
			e.takeTrapReqID(&config.Child{Name: fmt.Sprintf("t%d-net", i)}, wide)
		}
		want := e.reqids.traps[fmt.Sprintf("t%d-net", n/2)]
		scan := func(reqid uint32) string {
			for name, r := range e.reqids.traps {
				if r == reqid {
					return name
				}
			}
			return ""
		}
		for _, how := range []string{"scan", "index"} {
			b.Run(fmt.Sprintf("children=%d/how=%s", n, how), func(b *testing.B) {
				var got string
				for b.Loop() {
					if how == "scan" {
						got = scan(want)
					} else {
						got = e.childNameOf(want)
					}
				}
				if got != fmt.Sprintf("t%d-net", n/2) {
					b.Fatalf("found %q", got)
				}
			})
		}
	}
}
