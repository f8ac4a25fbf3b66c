package ike

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// if_id_in and if_id_out: the inbound SA with the in and fwd policies
// carry if_id_in, the outbound SA and the out policy if_id_out (swanctl's
// meaning); the trap policies of a trap child carry them too; delete
// leaves nothing behind.
func TestIfIDs(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.extraChild = "if_id_in = 42\nif_id_out = 0x2b"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-net"))
	kids, err := a.e.Children(t.Context())
	require.NoError(t, err)
	require.Len(t, kids, 1)
	n := 0
	for s, err := range a.b.SAs(t.Context()) {
		require.NoError(t, err)
		want := uint32(42)
		if fmt.Sprintf("%08x", s.ID.SPI) == kids[0].SPIOut {
			want = 0x2b
		}
		assert.Equal(t, want, s.IfID, "SA %s", s.ID)
		n++
	}
	assert.Equal(t, 2, n)
	dirs := map[kernelops.Direction]uint32{}
	for p, err := range a.b.Policies(t.Context()) {
		require.NoError(t, err)
		dirs[p.Dir] = p.IfID
	}
	assert.Equal(t, map[kernelops.Direction]uint32{kernelops.DirOut: 0x2b, kernelops.DirIn: 42, kernelops.DirFwd: 42}, dirs)
	require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a"))
	a.expectEmpty(t)
	b.expectEmpty(t)

	// Trap policies.
	st, _ := pairSides(t)
	st.extraChild, st.start = "if_id_in = 7\nif_id_out = 7", "trap"
	c := newPeer(t, "c", st.config(t, "c"))
	var traps int
	for p, err := range c.b.Policies(t.Context()) {
		require.NoError(t, err)
		assert.Equal(t, uint32(7), p.IfID)
		traps++
	}
	assert.NotZero(t, traps)
}

const noIfIDNote = "this test's dataplane has no interface ids"

func TestIfIDNeedsTheCapability(t *testing.T) {
	noLeaks(t)
	sa, _ := pairSides(t)
	sa.extraChild = "if_id_out = 9"
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer b.Close()
	_, err = New(t.Context(), Options{Backend: lacking{b, kernelops.CapIfID, noIfIDNote}, Config: sa.config(t, "a")})
	require.ErrorIs(t, err, ErrFacetMissing)
	assert.ErrorIs(t, err, kernelops.ErrNotSupported)
	assert.Contains(t, err.Error(), noIfIDNote)
	assert.Contains(t, err.Error(), "child a-net: if_id_in = 0, if_id_out = 9")
}
