package ike

import (
	"github.com/keyplane/keyplane/internal/chainmap"
	"github.com/keyplane/keyplane/kernelops"
)

// saIndex finds a child by either of its SAs (a kernel event names one),
// by idleKey. A Go map of two 40-octet keys per child cost some 180
// octets per child at 100,000 children; here the children are the
// entries, each chained through a link of its own per direction, and the
// key is made from the child's fields (inID, outID) when asked. Those
// fields do not change while the child is indexed: migrateChild takes it
// out before it moves the addresses and puts it back after.
type saIndex struct {
	in  chainmap.Map[saKey, childByIn, *childByIn]
	out chainmap.Map[saKey, childByOut, *childByOut]
}

// childByIn and childByOut are a child as an entry of saIndex.in and out.
type (
	childByIn  childSA
	childByOut childSA
)

func (c *childByIn) ChainKey() saKey          { return idleKey((*childSA)(c).inID()) }
func (c *childByIn) ChainNext() **childByIn   { return &c.nextIn }
func (c *childByOut) ChainKey() saKey         { return idleKey((*childSA)(c).outID()) }
func (c *childByOut) ChainNext() **childByOut { return &c.nextOut }

// get is the child with the SA id as its inbound or outbound SA (nil:
// none).
func (x *saIndex) get(id kernelops.SAID) *childSA {
	k := idleKey(id)
	if c := x.in.Get(k); c != nil {
		return (*childSA)(c)
	}
	if c := x.out.Get(k); c != nil {
		return (*childSA)(c)
	}
	return nil
}

// add indexes ch by both its SAs, in place of any child indexed by the
// same.
func (x *saIndex) add(ch *childSA) {
	x.in.Delete((*childByIn)(ch).ChainKey())
	x.in.Put((*childByIn)(ch))
	x.out.Delete((*childByOut)(ch).ChainKey())
	x.out.Put((*childByOut)(ch))
}

// remove takes ch out, where it is still the child indexed.
func (x *saIndex) remove(ch *childSA) {
	if k := (*childByIn)(ch).ChainKey(); x.in.Get(k) == (*childByIn)(ch) {
		x.in.Delete(k)
	}
	if k := (*childByOut)(ch).ChainKey(); x.out.Get(k) == (*childByOut)(ch) {
		x.out.Delete(k)
	}
}
