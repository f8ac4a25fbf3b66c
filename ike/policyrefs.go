package ike

import (
	"hash/maphash"

	"github.com/keyplane/keyplane/kernelops"
)

// policyRefs is the engine's polRefs by policy ID, kept under a 64-bit
// hash of the 88-octet ID (collisions chained): a map slot of 16 bytes
// instead of 96, three per child. Loop-owned.
type policyRefs struct {
	m         map[uint64]*polRefEntry
	seed      maphash.Seed
	oneBucket bool // tests: every ID collides
}

type polRefEntry struct {
	polRef
	id   kernelops.PolicyID
	next *polRefEntry // the next entry of the same hash
}

func newPolicyRefs() policyRefs {
	return policyRefs{m: map[uint64]*polRefEntry{}, seed: maphash.MakeSeed()}
}

func (p *policyRefs) hash(id kernelops.PolicyID) uint64 {
	if p.oneBucket {
		return 0
	}
	return maphash.Comparable(p.seed, id)
}

// get is id's polRef (nil: none).
func (p *policyRefs) get(id kernelops.PolicyID) *polRef {
	for x := p.m[p.hash(id)]; x != nil; x = x.next {
		if x.id == id {
			return &x.polRef
		}
	}
	return nil
}

// add makes id's polRef, which must not exist yet.
func (p *policyRefs) add(id kernelops.PolicyID) *polRef {
	h := p.hash(id)
	x := &polRefEntry{id: id, next: p.m[h]}
	p.m[h] = x
	return &x.polRef
}

func (p *policyRefs) del(id kernelops.PolicyID) {
	h := p.hash(id)
	for pp := p.m[h]; pp != nil; pp = pp.next {
		if pp.id != id {
			continue
		}
		if first := p.m[h]; first == pp {
			if pp.next == nil {
				delete(p.m, h)
			} else {
				p.m[h] = pp.next
			}
			return
		}
		for q := p.m[h]; q != nil; q = q.next {
			if q.next == pp {
				q.next = pp.next
				return
			}
		}
	}
}

// all yields every policy's ID and polRef.
func (p *policyRefs) all(yield func(kernelops.PolicyID, *polRef) bool) {
	for _, x := range p.m {
		for ; x != nil; x = x.next {
			if !yield(x.id, &x.polRef) {
				return
			}
		}
	}
}

func (p *policyRefs) len() int {
	n := 0
	for range p.all {
		n++
	}
	return n
}
