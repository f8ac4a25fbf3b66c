package ike

import (
	"github.com/keyplane/keyplane/internal/caddr"
	"github.com/keyplane/keyplane/internal/chainmap"
	"github.com/keyplane/keyplane/kernelops"
)

// policyRefs is the engine's polRefs by policy ID, kept under a hash of
// the ID (internal/chainmap): a map slot of 16 bytes instead of 96, three
// per child. Loop-owned.
type policyRefs struct {
	m chainmap.Map[polKey, polRefEntry, *polRefEntry]
}

type polRefEntry struct {
	polRef
	key  polKey
	next *polRefEntry // the next entry of the same hash
}

func (x *polRefEntry) ChainKey() polKey         { return x.key }
func (x *polRefEntry) ChainNext() **polRefEntry { return &x.next }

// id is the entry's policy ID.
func (x *polRefEntry) id() kernelops.PolicyID { return x.key.id() }

// polKey is a PolicyID in 56 octets instead of 88 (an entry in the
// 112-octet size class, not 144): its prefixes' addresses in compact
// form (internal/caddr; a Prefix has no zone).
type polKey struct {
	mark             kernelops.Mark
	ifID             uint32
	sport, dport     uint16
	src, dst         caddr.Addr
	srcBits, dstBits uint8 // the prefix length plus one (0: invalid, as Prefix keeps it)
	proto            uint8
	dir              kernelops.Direction
}

func polKeyOf(id kernelops.PolicyID) polKey {
	k := polKey{mark: id.Mark, ifID: id.IfID, sport: id.Selector.SrcPort, dport: id.Selector.DstPort,
		proto: id.Selector.Proto, dir: id.Dir}
	k.src, k.srcBits = caddr.PackPrefix(id.Selector.Src)
	k.dst, k.dstBits = caddr.PackPrefix(id.Selector.Dst)
	return k
}

func (k polKey) id() kernelops.PolicyID {
	return kernelops.PolicyID{Dir: k.dir, Mark: k.mark, IfID: k.ifID,
		Selector: kernelops.Selector{Src: caddr.UnpackPrefix(k.src, k.srcBits), Dst: caddr.UnpackPrefix(k.dst, k.dstBits),
			Proto: k.proto, SrcPort: k.sport, DstPort: k.dport}}
}

// get is id's polRef (nil: none).
func (p *policyRefs) get(id kernelops.PolicyID) *polRef {
	if x := p.m.Get(polKeyOf(id)); x != nil {
		return &x.polRef
	}
	return nil
}

// entry is id's entry (nil: none).
func (p *policyRefs) entry(id kernelops.PolicyID) *polRefEntry { return p.m.Get(polKeyOf(id)) }

// add makes id's entry, which must not exist yet.
func (p *policyRefs) add(id kernelops.PolicyID) *polRefEntry {
	x := &polRefEntry{key: polKeyOf(id)}
	p.m.Put(x)
	return x
}

func (p *policyRefs) del(id kernelops.PolicyID) { p.m.Delete(polKeyOf(id)) }

// all yields every policy's ID and polRef.
func (p *policyRefs) all(yield func(kernelops.PolicyID, *polRef) bool) {
	for x := range p.m.All() {
		if !yield(x.id(), &x.polRef) {
			return
		}
	}
}

func (p *policyRefs) len() int { return p.m.Len() }

// policyIDs are the IDs of the policies the child counts.
func (ch *childSA) policyIDs() []kernelops.PolicyID {
	ids := make([]kernelops.PolicyID, len(ch.polRefs))
	for i, x := range ch.polRefs {
		ids[i] = x.id()
	}
	return ids
}
