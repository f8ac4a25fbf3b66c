package ike

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNarrowedChildrenOwnReqIDs: a initiates two children with /32
// selector pairs; b narrows both onto its one child b-net with wide
// selectors (a trap: its policy has a reqid of its own). b's two CHILD
// SAs get distinct reqids, neither the trap's, and the model's outbound
// lookup (XFRM's: template peer, proto, mode, reqid; the newest SA
// wins) sends each tunnel's traffic through that tunnel's SA — with one
// reqid for both, the first tunnel's went out on the second's SA.
// Rekeying keeps a child's reqid; deleting the children gives their
// reqids back and leaves the trap's.
func TestNarrowedChildrenOwnReqIDs(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.localTS, sa.remoteTS = "10.1.0.1/32", "10.2.0.1/32"
	sa.extraChild = "}\n a-two {\n local_ts = 10.1.0.2/32\n remote_ts = 10.2.0.2/32\n esp_proposals = aes128gcm16"
	sb.start = "trap"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	trapReqID := func() uint32 {
		var r uint32
		for p, err := range b.b.Policies(t.Context()) {
			require.NoError(t, err)
			if p.Action == kernelops.ActionTrap {
				r = p.Templates[0].ReqID
			}
		}
		return r
	}
	trap := trapReqID()
	require.NotZero(t, trap, "b's trap policy")

	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-net"))
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-two"))
	var bc []ChildInfo
	waitFor(t, "b's two children", 3*time.Second, func() bool {
		bc = childrenOf(t, b)
		return len(bc) == 2 && bc[0].State == "installed" && bc[1].State == "installed"
	})
	require.Equal(t, "b-net", bc[0].Name)
	require.Equal(t, "b-net", bc[1].Name)
	assert.NotEqual(t, bc[0].ReqID, bc[1].ReqID, "two selector sets, two reqids")
	assert.NotEqual(t, trap, bc[0].ReqID, "narrowed: not the trap's reqid")
	assert.NotEqual(t, trap, bc[1].ReqID, "narrowed: not the trap's reqid")
	assert.Equal(t, trap, trapReqID(), "the trap keeps its reqid")

	// Each SA carries its child's reqid; each policy's template too.
	byOut := map[string]ChildInfo{}
	for _, c := range bc {
		byOut[c.SPIOut] = c
	}
	for s, err := range b.b.SAs(t.Context()) {
		require.NoError(t, err)
		spi := fmt.Sprintf("%08x", s.ID.SPI)
		var want uint32
		for _, c := range bc {
			if c.SPIIn == spi || c.SPIOut == spi {
				want = c.ReqID
			}
		}
		assert.Equal(t, want, s.ReqID, "SA %s", s.ID)
	}
	for p, err := range b.b.Policies(t.Context()) {
		require.NoError(t, err)
		if p.Action == kernelops.ActionTrap {
			continue
		}
		for _, c := range bc {
			if c.LocalTS == p.Selector.Src.String() || c.LocalTS == p.Selector.Dst.String() {
				assert.Equal(t, c.ReqID, p.Templates[0].ReqID, "policy %s", p.ID())
			}
		}
	}

	// The outbound lookup: each tunnel's packet through its own SA.
	send := func(n int) {
		t.Helper()
		for _, c := range childrenOf(t, b) {
			src, dst := netip.MustParsePrefix(c.LocalTS).Addr(), netip.MustParsePrefix(c.RemoteTS).Addr()
			for range n {
				res, err := b.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirOut, Src: src, Dst: dst, Proto: 1, Len: 84})
				require.NoError(t, err)
				require.Equal(t, nokernel.Protected, res.Verdict, "%s -> %s: %+v", src, dst, res)
				require.Len(t, res.SAs, 1)
				assert.Equal(t, c.SPIOut, fmt.Sprintf("%08x", res.SAs[0].SPI), "%s -> %s went out on another child's SA", src, dst)
			}
		}
	}
	send(2)

	// A rekey keeps the child's reqid.
	first := bc[0]
	require.NoError(t, b.e.RekeyChildSA(ctxT(t, 5*time.Second), first.ID))
	waitFor(t, "the rekeyed child", 3*time.Second, func() bool {
		cs := childrenOf(t, b)
		n := 0
		for _, c := range cs {
			if c.State == "installed" {
				n++
			}
		}
		return len(cs) == 2 && n == 2 && cs[0].ID != first.ID && cs[1].ID != first.ID
	})
	for _, c := range childrenOf(t, b) {
		if c.LocalTS == first.LocalTS {
			assert.Equal(t, first.ReqID, c.ReqID, "the rekey keeps the reqid")
		}
	}
	send(1)

	// Deleting the children gives their reqids back; the trap's stays.
	require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a"))
	waitFor(t, "b without children", 3*time.Second, func() bool { return len(childrenOf(t, b)) == 0 })
	require.NoError(t, b.e.call(ctxT(t, 5*time.Second), func() {
		assert.Len(t, b.e.reqids.byReqID, 1, "only the trap's reqid is in use")
		assert.Equal(t, "b-net", b.e.childNameOf(trap))
	}))
}

// TestConfiguredReqIDAsIs: a configured reqid is the user's choice, used
// as is for the trap policy and every CHILD SA of the child, narrowed or
// not; it stays in use while the trap does.
func TestConfiguredReqIDAsIs(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.localTS, sa.remoteTS = "10.1.0.1/32", "10.2.0.1/32"
	sa.extraChild = "}\n a-two {\n local_ts = 10.1.0.2/32\n remote_ts = 10.2.0.2/32\n esp_proposals = aes128gcm16"
	sb.start, sb.extraChild = "trap", "reqid = 4660" // 0x1234: swanctl takes it decimal
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-net"))
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-two"))
	var bc []ChildInfo
	waitFor(t, "b's two children", 3*time.Second, func() bool {
		bc = childrenOf(t, b)
		return len(bc) == 2 && bc[0].State == "installed" && bc[1].State == "installed"
	})
	assert.Equal(t, uint32(0x1234), bc[0].ReqID)
	assert.Equal(t, uint32(0x1234), bc[1].ReqID)
	for p, err := range b.b.Policies(t.Context()) {
		require.NoError(t, err)
		assert.Equal(t, uint32(0x1234), p.Templates[0].ReqID, "policy %s", p.ID())
	}
	require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a"))
	waitFor(t, "b without children", 3*time.Second, func() bool { return len(childrenOf(t, b)) == 0 })
	require.NoError(t, b.e.call(ctxT(t, 5*time.Second), func() {
		assert.Equal(t, "b-net", b.e.childNameOf(0x1234), "the trap still holds it")
	}))
}

// TestReloadTrapReqID: a reload that leaves a trap child as it was keeps
// its trap's reqid; one that sets a reqid puts the trap back with it and
// gives the assigned one back.
func TestReloadTrapReqID(t *testing.T) {
	noLeaks(t)
	sa, _ := pairSides(t)
	sa.start = "trap"
	a := newPeer(t, "a", sa.config(t, "a"))
	trapReqID := func() uint32 {
		var r uint32
		for p, err := range a.b.Policies(t.Context()) {
			require.NoError(t, err)
			r = p.Templates[0].ReqID
		}
		return r
	}
	first := trapReqID()
	require.NotZero(t, first)
	require.NoError(t, a.e.Reload(t.Context(), sa.config(t, "a")))
	assert.Equal(t, first, trapReqID(), "unchanged trap, same reqid")
	sa.extraChild = "reqid = 77"
	require.NoError(t, a.e.Reload(t.Context(), sa.config(t, "a")))
	assert.Equal(t, uint32(77), trapReqID(), "the configured reqid")
	require.NoError(t, a.e.call(ctxT(t, 5*time.Second), func() {
		assert.Nil(t, a.e.reqids.byReqID[first], "the assigned one given back")
	}))
}

// TestRestoreRegistersReqIDs: children restored from HA records hold
// their records' reqids (a later allocation never takes them); two
// records of one reqid with different selectors (narrowed children
// restored on a node that allocated it already) get two.
func TestRestoreRegistersReqIDs(t *testing.T) {
	sa, sb := pairSides(t)
	p := newPeer(t, "b", sb.config(t, "b"))
	one := haTestChild("b-net", 0xc1000001, 0xc2000001)
	two := haTestChild("b-net", 0xc1000002, 0xc2000002)
	three := haTestChild("b-net", 0xc1000003, 0xc2000003)
	for i, c := range []*HAChild{one, two, three} {
		a := netip.AddrFrom4([4]byte{10, 2, 0, byte(i + 1)})
		r := netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)})
		c.LocalTS, c.RemoteTS = []HATS{{Start: a, End: a}}, []HATS{{Start: r, End: r}}
		c.Est = time.Now().Add(-time.Minute)
	}
	three.ReqID = kernelops.DefaultReqIDMin + 0x100
	require.NoError(t, p.e.Restore(ctxT(t, 10*time.Second), haTestIKE(sb, sa), []*HAChild{one, two, three}, RestoreOptions{}))
	got := map[uint32]uint32{} // out SPI -> reqid
	for s, err := range p.b.SAs(t.Context()) {
		require.NoError(t, err)
		got[s.SA.ID.SPI] = s.SA.ReqID
	}
	assert.Equal(t, one.ReqID, got[one.OutSPI], "the record's reqid")
	assert.Equal(t, three.ReqID, got[three.OutSPI], "the record's reqid")
	assert.NotEqual(t, got[one.OutSPI], got[two.OutSPI], "another selector set: another reqid")
	require.NoError(t, p.e.call(ctxT(t, 5*time.Second), func() {
		for _, r := range []uint32{got[one.OutSPI], got[two.OutSPI], three.ReqID} {
			assert.Equal(t, "b-net", p.e.childNameOf(r), "reqid %#x registered", r)
		}
		p.e.reqids.next = three.ReqID
		assert.NotEqual(t, three.ReqID, p.e.reqids.fresh(), "a later allocation skips it")
	}))
}
