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

// mark_in and mark_out: the inbound SA with the in and fwd policies
// carry mark_in, the outbound SA and the out policy mark_out (swanctl's
// meaning); only traffic with the mark uses the child; the trap policies
// carry mark_out; delete leaves nothing behind.
func TestMarks(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.extraChild = "mark_in = 0x2a/0xff\nmark_out = 43"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-net"))
	kids, err := a.e.Children(t.Context())
	require.NoError(t, err)
	require.Len(t, kids, 1)
	markIn, markOut := kernelops.Mark{Value: 0x2a, Mask: 0xff}, kernelops.Mark{Value: 43, Mask: 0xffffffff}
	var in kernelops.SAID
	n := 0
	for s, err := range a.b.SAs(t.Context()) {
		require.NoError(t, err)
		want := markIn
		if fmt.Sprintf("%08x", s.ID.SPI) == kids[0].SPIOut {
			want = markOut
		} else {
			in = s.ID
		}
		assert.Equal(t, want, s.ID.Mark, "SA %s", s.ID)
		n++
	}
	assert.Equal(t, 2, n)
	dirs := map[kernelops.Direction]kernelops.Mark{}
	for p, err := range a.b.Policies(t.Context()) {
		require.NoError(t, err)
		dirs[p.Dir] = p.Mark
	}
	assert.Equal(t, map[kernelops.Direction]kernelops.Mark{kernelops.DirOut: markOut, kernelops.DirIn: markIn, kernelops.DirFwd: markIn}, dirs)

	// Outbound: only the marked packet is protected.
	src, dst := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9")
	for _, tc := range []struct {
		mark uint32
		want nokernel.Verdict
	}{{43, nokernel.Protected}, {0, nokernel.Passed}, {42, nokernel.Passed}} {
		res, err := a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirOut, Src: src, Dst: dst, Proto: 6, Len: 100, Mark: tc.mark})
		require.NoError(t, err)
		assert.Equal(t, tc.want, res.Verdict, "outbound mark %d: %+v", tc.mark, res)
	}
	// Inbound: found by the SA's mark, as XFRM does.
	for _, tc := range []struct {
		mark uint32
		want nokernel.Verdict
	}{{0x12a, nokernel.Delivered}, {0, nokernel.Dropped}} {
		res, err := a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: kernelops.SAID{Dst: in.Dst, SPI: in.SPI, Proto: in.Proto},
			Src: dst, Dst: src, Proto: 6, Len: 100, Mark: tc.mark})
		require.NoError(t, err)
		assert.Equal(t, tc.want, res.Verdict, "inbound mark %#x: %+v", tc.mark, res)
	}
	require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a"))
	a.expectEmpty(t)
	b.expectEmpty(t)

	// Trap policies.
	st, _ := pairSides(t)
	st.extraChild, st.start = "mark_out = 7", "trap"
	c := newPeer(t, "c", st.config(t, "c"))
	var traps int
	for p, err := range c.b.Policies(t.Context()) {
		require.NoError(t, err)
		assert.Equal(t, kernelops.Mark{Value: 7, Mask: 0xffffffff}, p.Mark)
		traps++
	}
	assert.NotZero(t, traps)
}

const noMarksNote = "this test's dataplane has no marks"

func TestMarksNeedTheCapability(t *testing.T) {
	noLeaks(t)
	sa, _ := pairSides(t)
	sa.extraChild = "mark_in = 9/0xf"
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer b.Close()
	_, err = New(t.Context(), Options{Backend: lacking{b, kernelops.CapMarks, noMarksNote}, Config: sa.config(t, "a")})
	require.ErrorIs(t, err, ErrFacetMissing)
	assert.ErrorIs(t, err, kernelops.ErrNotSupported)
	assert.Contains(t, err.Error(), noMarksNote)
	assert.Contains(t, err.Error(), "child a-net: mark_in = 0x9/0xf, mark_out = 0x0/0x0")
}
