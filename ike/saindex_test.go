package ike

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// TestSAIndex: a child is found by either SA, with or without the source
// (idleKey), through the index's growth; a child indexed in another's
// place displaces it for that SA only, and removing the displaced one
// leaves the other indexed; a moved child is found at its new addresses
// only.
func TestSAIndex(t *testing.T) {
	cfg := &config.Child{Name: "net", MarkIn: kernelops.Mark{Value: 7, Mask: 0xff}}
	l, r := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	mk := func(i uint32) *childSA {
		return &childSA{cfg: cfg, localAddr: l, remoteAddr: r, inSPI: 0xc0000000 + i, outSPI: 0xd0000000 + i}
	}
	var x saIndex
	const n = 3000
	kids := make([]*childSA, n)
	for i := range kids {
		kids[i] = mk(uint32(i))
		x.add(kids[i])
	}
	for i, ch := range kids {
		assert.Same(t, ch, x.get(ch.inID()), "child %d by its inbound SA", i)
		assert.Same(t, ch, x.get(ch.outID()), "child %d by its outbound SA", i)
		id := ch.inID()
		id.Src = netip.Addr{}
		assert.Same(t, ch, x.get(id), "child %d without the source", i)
	}
	wrongMark := kids[0].inID()
	wrongMark.Mark = kernelops.Mark{}
	assert.Nil(t, x.get(wrongMark))

	// Displaced for its inbound SA only.
	other := mk(5)
	other.outSPI = 0xe0000000
	x.add(other)
	assert.Same(t, other, x.get(kids[5].inID()))
	assert.Same(t, kids[5], x.get(kids[5].outID()))
	x.remove(kids[5])
	assert.Same(t, other, x.get(other.inID()), "the displacing child stays")
	assert.Nil(t, x.get(kids[5].outID()))

	// Moved: out, new addresses, in again.
	ch := kids[9]
	old := ch.inID()
	x.remove(ch)
	ch.localAddr, ch.remoteAddr = netip.MustParseAddr("192.0.2.99"), netip.MustParseAddr("198.51.100.99")
	x.add(ch)
	assert.Nil(t, x.get(old))
	assert.Same(t, ch, x.get(ch.inID()))
	assert.Same(t, ch, x.get(ch.outID()))

	for _, ch := range kids {
		x.remove(ch)
	}
	x.remove(other)
	assert.Zero(t, x.in.Len()+x.out.Len())
}
