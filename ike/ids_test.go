package ike

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// childrenOf lists a peer's children (of every IKE SA).
func childrenOf(t *testing.T, p *peer) []ChildInfo {
	t.Helper()
	var out []ChildInfo
	for _, sa := range p.sas(t) {
		out = append(out, sa.Children...)
	}
	return out
}

// TestTerminateChildByID is the regression of issue 18: a's two
// children (a-net, a-two) are both narrowed onto b's one child b-net,
// so b has two CHILD SAs with one name (and, their selectors differing,
// two reqids: reqidindex.go). Terminating one
// of them by its unique ID on b removes that one only (by name, both
// would go); the other stays installed on both ends.
func TestTerminateChildByID(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	secondChild(&sa, "aes128gcm16")
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-two"))
	var bc []ChildInfo
	waitFor(t, "b's two children", 3*time.Second, func() bool {
		bc = childrenOf(t, b)
		return len(bc) == 2 && bc[0].State == "installed" && bc[1].State == "installed"
	})
	require.Equal(t, bc[0].Name, bc[1].Name, "one name")
	require.NotEqual(t, bc[0].ReqID, bc[1].ReqID, "two selector sets, two reqids")
	require.NotEqual(t, bc[0].ID, bc[1].ID, "two IDs")
	ikeB := b.sas(t)[0]
	for _, c := range bc {
		assert.Equal(t, ikeB.ID, c.IKEID, "child %d's IKE SA", c.ID)
	}

	gone, kept := bc[0], bc[1]
	require.NoError(t, b.e.TerminateChildSA(ctxT(t, 5*time.Second), gone.ID))
	for _, p := range []*peer{a, b} {
		waitFor(t, p.name+": one child left", 3*time.Second, func() bool {
			cs := childrenOf(t, p)
			return len(cs) == 1 && cs[0].State == "installed"
		})
	}
	left := childrenOf(t, b)[0]
	assert.Equal(t, kept.ID, left.ID)
	assert.Equal(t, kept.SPIIn, left.SPIIn)
	// The one a kept is the peer of b's kept one.
	assert.Equal(t, kept.SPIIn, childrenOf(t, a)[0].SPIOut)
	for _, p := range []*peer{a, b} {
		s, pol := p.counts(t)
		assert.Equal(t, 2, s, "%s SAs", p.name)
		assert.Equal(t, 3, pol, "%s policies", p.name)
	}
	// The event and the log line of the delete name its ID.
	b.waitEvent(t, 3*time.Second, func(ev Event) bool {
		return ev.Kind == "child" && ev.State == "deleting" && ev.ChildID == gone.ID && ev.IKEID == ikeB.ID
	})
	assert.Contains(t, b.logText(), fmt.Sprintf("child-id=%d", gone.ID))
	assert.Contains(t, b.logText(), fmt.Sprintf("ike-id=%d", ikeB.ID))

	// Gone, or never there: ErrNotFound, nothing touched.
	for _, id := range []uint32{gone.ID, 0, 9999} {
		err := b.e.TerminateChildSA(ctxT(t, 5*time.Second), id)
		require.ErrorIs(t, err, ErrNotFound, "ID %d", id)
		assert.Contains(t, err.Error(), fmt.Sprintf("no CHILD SA with ID %d", id))
		assert.ErrorIs(t, b.e.RekeyChildSA(ctxT(t, 5*time.Second), id), ErrNotFound)
		assert.ErrorIs(t, b.e.TerminateIKESA(ctxT(t, 5*time.Second), id+100), ErrNotFound)
		assert.ErrorIs(t, b.e.RekeyIKESA(ctxT(t, 5*time.Second), id+100), ErrNotFound)
	}
	assert.Len(t, childrenOf(t, b), 1)

	// The IKE SA by its ID: gone on both ends.
	require.NoError(t, b.e.TerminateIKESA(ctxT(t, 5*time.Second), ikeB.ID))
	assert.Empty(t, b.sas(t))
	waitFor(t, "a's IKE SA gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 })
	a.expectEmpty(t)
	b.expectEmpty(t)
}

// TestIDsMonotonic: IDs start at 1, a rekey makes new SAs with higher
// IDs (the old ones are never given again), and the events of each SA
// carry its ID.
func TestIDsMonotonic(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	first, _, ok := steady(t, a, b)
	require.True(t, ok)
	assert.Equal(t, uint32(1), first.ID)
	assert.Equal(t, uint32(1), first.Children[0].ID)
	a.waitEvent(t, 3*time.Second, func(ev Event) bool {
		return ev.Kind == "ike" && ev.State == "established" && ev.IKEID == 1
	})
	a.waitEvent(t, 3*time.Second, func(ev Event) bool {
		return ev.Kind == "child" && ev.State == "installed" && ev.ChildID == 1 && ev.IKEID == 1
	})

	require.NoError(t, a.e.RekeyChildSA(ctxT(t, 5*time.Second), first.Children[0].ID))
	var now IKESAInfo
	waitFor(t, "child rekeyed", 3*time.Second, func() bool {
		var ok bool
		now, _, ok = steady(t, a, b)
		return ok && now.Children[0].SPIIn != first.Children[0].SPIIn
	})
	assert.Equal(t, first.ID, now.ID, "a child rekey keeps the IKE SA")
	assert.Greater(t, now.Children[0].ID, first.Children[0].ID)

	require.NoError(t, a.e.RekeyIKESA(ctxT(t, 5*time.Second), first.ID))
	waitFor(t, "IKE SA rekeyed", 3*time.Second, func() bool {
		var ok bool
		now, _, ok = steady(t, a, b)
		return ok && now.SPIi != first.SPIi
	})
	assert.Greater(t, now.ID, first.ID)
	// A rekeyed-away SA's ID is gone for good.
	assert.ErrorIs(t, a.e.RekeyIKESA(ctxT(t, 5*time.Second), first.ID), ErrNotFound)
	assert.False(t, strings.Contains(a.logText(), "ike-id=0 "), "an IKE SA logged without its ID")
}
