package ike

import (
	"github.com/keyplane/keyplane/internal/chainmap"
	"github.com/keyplane/keyplane/kernelops"
)

// policyRefs is the engine's polRefs by policy ID, kept under a hash of
// the 88-octet ID (internal/chainmap): a map slot of 16 bytes instead of
// 96, three per child. Loop-owned.
type policyRefs struct {
	m chainmap.Map[kernelops.PolicyID, polRefEntry, *polRefEntry]
}

type polRefEntry struct {
	polRef
	id   kernelops.PolicyID
	next *polRefEntry // the next entry of the same hash
}

func (x *polRefEntry) ChainKey() kernelops.PolicyID { return x.id }
func (x *polRefEntry) ChainNext() **polRefEntry     { return &x.next }

// get is id's polRef (nil: none).
func (p *policyRefs) get(id kernelops.PolicyID) *polRef {
	if x := p.m.Get(id); x != nil {
		return &x.polRef
	}
	return nil
}

// entry is id's entry (nil: none).
func (p *policyRefs) entry(id kernelops.PolicyID) *polRefEntry { return p.m.Get(id) }

// add makes id's entry, which must not exist yet.
func (p *policyRefs) add(id kernelops.PolicyID) *polRefEntry {
	x := &polRefEntry{id: id}
	p.m.Put(x)
	return x
}

func (p *policyRefs) del(id kernelops.PolicyID) { p.m.Delete(id) }

// all yields every policy's ID and polRef.
func (p *policyRefs) all(yield func(kernelops.PolicyID, *polRef) bool) {
	for x := range p.m.All() {
		if !yield(x.id, &x.polRef) {
			return
		}
	}
}

func (p *policyRefs) len() int { return p.m.Len() }

// policyIDs are the IDs of the policies the child counts.
func (ch *childSA) policyIDs() []kernelops.PolicyID {
	ids := make([]kernelops.PolicyID, len(ch.polRefs))
	for i, x := range ch.polRefs {
		ids[i] = x.id
	}
	return ids
}
