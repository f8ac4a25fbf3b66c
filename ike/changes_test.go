package ike

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// changeList is one listing of changes, collected.
type changeList struct {
	next      Cursor
	ikes      []IKESAInfo
	kids      []ChildInfo
	goneIKEs  []uint32
	goneChild []uint32
}

func listChanges(t *testing.T, p *peer, since Cursor, opts ChangeOptions) changeList {
	t.Helper()
	c, err := p.e.Changes(t.Context(), since, opts)
	require.NoError(t, err)
	var l changeList
	l.next = c.Next
	for sa, err := range c.IKESAs(t.Context()) {
		require.NoError(t, err)
		l.ikes = append(l.ikes, sa)
	}
	for ch, err := range c.Children(t.Context()) {
		require.NoError(t, err)
		l.kids = append(l.kids, ch)
	}
	for _, d := range c.DeletedIKESAs {
		require.Zero(t, d.ChildID)
		l.goneIKEs = append(l.goneIKEs, d.IKEID)
	}
	for _, d := range c.DeletedChildren {
		require.NotZero(t, d.ChildID)
		l.goneChild = append(l.goneChild, d.ChildID)
	}
	return l
}

func ikeIDs(sas []IKESAInfo) []uint32 {
	var out []uint32
	for _, sa := range sas {
		out = append(out, sa.ID)
	}
	return out
}

func childIDs(cs []ChildInfo) []uint32 {
	var out []uint32
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// TestChanges: a listing since a cursor shows the IKE SAs added or
// changed since and the ones deleted: after the tunnel comes up, after a
// child rekey (the old child deleted, the new one listed), an IKE rekey
// (the old IKE SA deleted, the new one listed with the children, which
// are not deleted), a child's delete and the IKE SA's; nothing when
// nothing changed. Counters are read only when asked.
func TestChanges(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	secondChild(&sa, "aes128gcm16")
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))

	c0 := listChanges(t, a, Cursor{}, ChangeOptions{})
	assert.Empty(t, c0.ikes)
	assert.False(t, c0.next.IsZero())
	quiet := listChanges(t, a, c0.next, ChangeOptions{})
	assert.Empty(t, quiet.ikes)
	assert.Equal(t, c0.next, quiet.next, "nothing changed")

	establish(t, a, b, "a-net")
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-two"))
	settle(t, a, b)
	up := listChanges(t, a, c0.next, ChangeOptions{})
	require.Len(t, up.ikes, 1)
	require.Len(t, up.kids, 2)
	assert.Empty(t, up.goneIKEs)
	assert.Empty(t, up.goneChild)
	for _, c := range up.kids {
		assert.True(t, c.CountersOmitted, "no counters unless asked")
		assert.Equal(t, ChildInstalled, c.State)
	}
	ikeID := up.ikes[0].ID
	assert.Equal(t, up.ikes[0].Children, up.kids)
	// The same as a full listing, without the counters.
	full, err := a.e.IKESAs(t.Context())
	require.NoError(t, err)
	for i := range full[0].Children {
		full[0].Children[i].CountersOmitted = true
	}
	assert.Equal(t, full, up.ikes)
	assert.Empty(t, listChanges(t, a, up.next, ChangeOptions{}).ikes, "nothing since")

	// Counters when asked: the same entries with the dataplane's counters.
	counted := listChanges(t, a, c0.next, ChangeOptions{Counters: true})
	for _, c := range counted.kids {
		assert.False(t, c.CountersOmitted)
		assert.Empty(t, c.CounterErr)
	}

	// A child rekey: the old child goes, the new one is listed.
	old := up.kids[0].ID
	require.NoError(t, a.e.RekeyChildSA(t.Context(), old))
	waitFor(t, "the rekeyed child gone", 5*time.Second, func() bool {
		kids, err := a.e.Children(t.Context())
		require.NoError(t, err)
		return len(kids) == 2 && !slices.Contains(childIDs(kids), old)
	})
	settle(t, a, b)
	rk := listChanges(t, a, up.next, ChangeOptions{})
	assert.Equal(t, []uint32{ikeID}, ikeIDs(rk.ikes))
	assert.Equal(t, []uint32{old}, rk.goneChild)
	assert.Empty(t, rk.goneIKEs)
	assert.NotContains(t, childIDs(rk.kids), old)
	assert.Len(t, rk.kids, 2)

	// An IKE rekey: the old IKE SA goes, the new one has the children.
	require.NoError(t, a.e.RekeyIKESA(t.Context(), ikeID))
	waitFor(t, "the old IKE SA gone", 5*time.Second, func() bool {
		sas, err := a.e.IKESAs(t.Context())
		require.NoError(t, err)
		return len(sas) == 1 && sas[0].ID != ikeID && sas[0].State == IKEEstablished
	})
	settle(t, a, b)
	ik := listChanges(t, a, rk.next, ChangeOptions{})
	require.Len(t, ik.ikes, 1)
	newIKE := ik.ikes[0].ID
	assert.NotEqual(t, ikeID, newIKE)
	assert.Equal(t, []uint32{ikeID}, ik.goneIKEs)
	assert.Empty(t, ik.goneChild, "the children moved, they are not gone")
	assert.ElementsMatch(t, childIDs(rk.kids), childIDs(ik.kids))
	for _, c := range ik.kids {
		assert.Equal(t, newIKE, c.IKEID)
	}

	// A child's delete, then the IKE SA's.
	two := ik.kids[1]
	require.NoError(t, a.e.TerminateChildSA(t.Context(), two.ID))
	settle(t, a, b)
	del := listChanges(t, a, ik.next, ChangeOptions{})
	assert.Equal(t, []uint32{newIKE}, ikeIDs(del.ikes))
	assert.Equal(t, []uint32{two.ID}, del.goneChild)
	require.NoError(t, a.e.TerminateIKESA(t.Context(), newIKE))
	settle(t, a, b)
	end := listChanges(t, a, del.next, ChangeOptions{})
	assert.Empty(t, end.ikes)
	assert.Equal(t, []uint32{newIKE}, end.goneIKEs)
	assert.Equal(t, []uint32{ik.kids[0].ID}, end.goneChild)
	// From the first cursor: only what is gone (nothing is there).
	all := listChanges(t, a, c0.next, ChangeOptions{})
	assert.Empty(t, all.ikes)
	assert.Equal(t, []uint32{ikeID, newIKE}, all.goneIKEs)
	assert.ElementsMatch(t, append([]uint32{old}, childIDs(rk.kids)...), all.goneChild, "%v %v %v %v", del.goneChild, end.goneChild, rk.goneChild, ik.goneChild)
}

// TestChangesCursorRefused: a cursor older than the journal of
// deletions, of another engine, or ahead of the engine is a
// *CursorError (ErrCursorExpired); the zero cursor always lists.
func TestChangesCursorRefused(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	require.NoError(t, a.e.call(t.Context(), func() { a.e.chg.max = 3 }))
	c0 := listChanges(t, a, Cursor{}, ChangeOptions{})

	// Each tunnel up and down buries an IKE SA and its child: two rounds
	// overflow a journal of 3.
	for range 2 {
		establish(t, a, b, "a-net")
		require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a"))
		settle(t, a, b)
	}
	_, err := a.e.Changes(t.Context(), c0.next, ChangeOptions{})
	require.ErrorIs(t, err, ErrCursorExpired)
	var ce *CursorError
	require.True(t, errors.As(err, &ce))
	assert.Equal(t, c0.next, ce.Cursor)
	assert.Contains(t, err.Error(), "older than the journal")
	assert.Contains(t, err.Error(), "cursor 0")

	now := listChanges(t, a, Cursor{}, ChangeOptions{})
	_, err = a.e.Changes(t.Context(), now.next, ChangeOptions{})
	require.NoError(t, err, "the cursor of the full listing is good")

	other := listChanges(t, b, Cursor{}, ChangeOptions{}).next
	if other.epoch != now.next.epoch {
		_, err = a.e.Changes(t.Context(), Cursor{epoch: other.epoch, gen: now.next.gen}, ChangeOptions{})
		require.ErrorIs(t, err, ErrCursorExpired)
		assert.Contains(t, err.Error(), "not from this run")
	}
	_, err = a.e.Changes(t.Context(), Cursor{epoch: now.next.epoch, gen: now.next.gen + 1}, ChangeOptions{})
	require.ErrorIs(t, err, ErrCursorExpired)
	assert.Contains(t, err.Error(), "ahead of the engine")
}

func TestParseCursor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Cursor
		bad  bool
	}{
		{in: "0", want: Cursor{}},
		{in: "1a2b3c4d.42", want: Cursor{epoch: 0x1a2b3c4d, gen: 42}},
		{in: "00000001.0", want: Cursor{epoch: 1, gen: 0}},
		{in: "ffffffff.18446744073709551615", want: Cursor{epoch: 0xffffffff, gen: 1<<64 - 1}},
		{in: "", bad: true},
		{in: "00", bad: true},
		{in: "0.5", bad: true}, // epoch 0 is never given
		{in: "1a2b3c4d", bad: true},
		{in: "1a2b3c4d.", bad: true},
		{in: ".42", bad: true},
		{in: "123456789.1", bad: true},
		{in: "1.18446744073709551616", bad: true},
		{in: "1.-1", bad: true},
		{in: "1.+1", bad: true},
		{in: "g.1", bad: true},
		{in: "1.2.3", bad: true},
		{in: strings.Repeat("9", 100), bad: true},
	} {
		got, err := ParseCursor(tc.in)
		if tc.bad {
			require.Error(t, err, "%q", tc.in)
			assert.True(t, IsBadCursor(err), "%q: %v", tc.in, err)
			assert.Less(t, len(err.Error()), 200)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
		assert.Equal(t, tc.in, got.String())
	}
}

// FuzzParseCursor: what parses prints back as it was sent, and the
// text of any cursor parses back to it.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0", "1a2b3c4d.42", "", "0.1", "ffffffff.18446744073709551615", "1.2.3", "+1.1", "1.1_0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !IsBadCursor(err) || len(err.Error()) > 200 {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		back, err := ParseCursor(c.String())
		if err != nil || back != c {
			t.Fatalf("%q → %v → %q → %v, %v", s, c, c.String(), back, err)
		}
	})
}

// TestChangesMany: with more SAs than a loop turn copies, the zero
// cursor lists them all in ID order; a listing since its cursor lists
// only the few marked since, and the removed ones with their children;
// the nodes of removed SAs are reused by SAs added later.
func TestChangesMany(t *testing.T) {
	const n = 2*listChunk + 5
	ca, _ := tunnelConfigs(t, 1)
	a := newPeer(t, "a", ca, withLogLevel(slog.LevelWarn))
	sas := fillSAs(t, a, n)
	all := listChanges(t, a, Cursor{}, ChangeOptions{Counters: true})
	require.Len(t, all.ikes, n)
	require.True(t, slices.IsSorted(ikeIDs(all.ikes)))
	assert.Empty(t, all.kids[0].CounterErr)
	assert.False(t, all.kids[0].CountersOmitted)

	var nodes int
	require.NoError(t, a.e.call(t.Context(), func() {
		a.e.changed(sas[n-1])
		a.e.changed(sas[7])
		a.e.changed(sas[3000])
		a.e.removeSA(sas[10])
		a.e.removeSA(sas[11])
		nodes = len(a.e.chg.nodes)
	}))
	some := listChanges(t, a, all.next, ChangeOptions{})
	assert.Equal(t, []uint32{sas[7].id, sas[3000].id, sas[n-1].id}, ikeIDs(some.ikes))
	assert.Equal(t, []uint32{sas[10].id, sas[11].id}, some.goneIKEs)
	assert.Equal(t, []uint32{sas[10].children[0].id, sas[11].children[0].id}, some.goneChild)
	require.NoError(t, a.e.call(t.Context(), func() {
		a.e.addSA(sas[10].localSPI(), sas[10])
		require.Len(t, a.e.chg.nodes, nodes, "a freed node reused")
	}))
	again := listChanges(t, a, some.next, ChangeOptions{})
	assert.Equal(t, []uint32{sas[10].id}, ikeIDs(again.ikes))
	assert.Empty(t, again.goneIKEs)
	// Since the first cursor: sas[10] is there again, so not deleted.
	since0 := listChanges(t, a, all.next, ChangeOptions{})
	assert.Equal(t, []uint32{sas[11].id}, since0.goneIKEs)
	assert.Equal(t, []uint32{sas[11].children[0].id}, since0.goneChild)
}
