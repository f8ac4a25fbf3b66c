package ike

import (
	"net/netip"
	"testing"
	"unsafe"

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

// TestPolKey: a policy ID packed into a polKey reads back equal, for
// each kind of prefix a selector can hold (none, IPv4, IPv6, IPv4-mapped
// IPv6, host bits set, an invalid length), and IDs that differ in any
// field pack differently. The entry stays in the 112-octet size class.
func TestPolKey(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	mapped := netip.MustParseAddr("::ffff:192.0.2.7")
	prefixes := []netip.Prefix{{}, netip.PrefixFrom(v4, 24), netip.PrefixFrom(v4, 32), netip.PrefixFrom(v4, 0),
		netip.PrefixFrom(v6, 64), netip.PrefixFrom(v6, 128), netip.PrefixFrom(mapped, 96), netip.PrefixFrom(mapped, 128),
		netip.PrefixFrom(v4, 33), netip.PrefixFrom(v6, -1)}
	var ids []kernelops.PolicyID
	for _, src := range prefixes {
		for _, dst := range prefixes[:4] {
			ids = append(ids, kernelops.PolicyID{Selector: kernelops.Selector{Src: src, Dst: dst}, Dir: kernelops.DirIn})
		}
	}
	base := ids[5]
	for _, f := range []func(*kernelops.PolicyID){
		func(id *kernelops.PolicyID) { id.Dir = kernelops.DirFwd },
		func(id *kernelops.PolicyID) { id.Mark = kernelops.Mark{Value: 1, Mask: 0xff} },
		func(id *kernelops.PolicyID) { id.IfID = 9 },
		func(id *kernelops.PolicyID) { id.Selector.Proto = 17 },
		func(id *kernelops.PolicyID) { id.Selector.SrcPort = 500 },
		func(id *kernelops.PolicyID) { id.Selector.DstPort = 4500 },
	} {
		id := base
		f(&id)
		ids = append(ids, id)
	}
	keys := map[polKey]kernelops.PolicyID{}
	for _, id := range ids {
		k := polKeyOf(id)
		assert.Equal(t, id, k.id(), "round trip of %v", id)
		if other, dup := keys[k]; dup && other != id {
			t.Errorf("%v and %v pack alike", other, id)
		}
		keys[k] = id
	}
	if n := unsafe.Sizeof(polRefEntry{}); n > 112 {
		t.Errorf("polRefEntry is %d octets, over the 112-octet size class", n)
	}
}
