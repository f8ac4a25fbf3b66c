package ike

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/kernelops"
)

// TestPolicyRefs: refs are found by ID, with distinct hashes and with
// every ID colliding, and removed from the front, middle and end of a
// chain.
func TestPolicyRefs(t *testing.T) {
	id := func(i int) kernelops.PolicyID {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		return kernelops.PolicyID{Selector: kernelops.Selector{Src: netip.PrefixFrom(a, 32), Dst: netip.PrefixFrom(a, 32)}, Dir: kernelops.DirOut}
	}
	for _, collide := range []bool{false, true} {
		var p policyRefs
		if collide {
			p.m.CollideForTest()
		}
		const n = 5
		for i := range n {
			require.Nil(t, p.get(id(i)))
			p.add(id(i)).n = i + 1
		}
		require.Equal(t, n, p.len())
		for i := range n {
			require.NotNil(t, p.get(id(i)), "collide=%v %d", collide, i)
			assert.Equal(t, i+1, p.get(id(i)).n)
		}
		for _, i := range []int{2, 0, 4, 3, 1} { // middle, an end, the other, ...
			p.del(id(i))
			assert.Nil(t, p.get(id(i)))
			p.del(id(i)) // gone: no change
		}
		assert.Zero(t, p.len())
		for range p.all {
			t.Error("a deleted ref is still listed")
		}
	}
}
