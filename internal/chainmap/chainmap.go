// Package chainmap is a map from a large comparable key to entries that
// hold their own key, kept under a 64-bit hash of the key with the
// entries of equal hashes chained through the entries themselves.
//
// A Go map keyed by a large key (a PolicyID is 88 octets, a SAID 64)
// keeps a copy of the key in every slot beside the entry that already
// holds it; at 100,000 tunnels with several such maps that copy was a
// large part of the memory per tunnel. Here the buckets are one array of
// pointers, a power of two long and at most one per entry (a Go map
// from the hash to the entry cost 19 to 39 octets per entry in its
// 16-octet slots and control words; this costs 8 to 16), and an entry
// pays one pointer for its chain link. The array doubles when the entries
// outnumber it, and the entries move over to the new one two old buckets
// at a time on later Puts (as Go's maps once did), so no Put rehashes a
// large map at once.
package chainmap

import (
	"hash/maphash"
	"iter"
)

// Entry is what a Map holds: a pointer to E that knows its key and its
// link to the next entry of the same hash.
type Entry[K comparable, E any] interface {
	*E
	// ChainKey is the entry's key. It must not change while the entry is
	// in a Map.
	ChainKey() K
	// ChainNext is the entry's link field, which only the Map uses.
	ChainNext() **E
}

// Map holds entries by key; the zero Map is empty and ready to use. It is
// not safe for concurrent use.
type Map[K comparable, E any, P Entry[K, E]] struct {
	b       []*E // the buckets: b[h mod len(b)] chains the entries of hash h
	old     []*E // while growing, the buckets b replaced: old[i] for i >= moved still holds its entries
	moved   int
	seed    maphash.Seed
	n       int
	collide bool
}

// The first bucket array's length, and how many old buckets a Put moves.
const (
	minBuckets = 8
	moveStep   = 2
)

// CollideForTest makes every key hash alike, so that tests exercise the
// chains. Call it on an empty Map.
func (c *Map[K, E, P]) CollideForTest() { c.collide = true }

func (c *Map[K, E, P]) hash(k K) uint64 {
	if c.collide {
		return 0
	}
	return maphash.Comparable(c.seed, k)
}

// bucket is the head of hash h's chain, in old while its bucket there has
// not moved yet. Call it on a Map that has buckets.
func (c *Map[K, E, P]) bucket(h uint64) **E {
	if c.old != nil {
		if i := int(h & uint64(len(c.old)-1)); i >= c.moved {
			return &c.old[i]
		}
	}
	return &c.b[h&uint64(len(c.b)-1)]
}

// Get returns the entry with key k (nil: none).
func (c *Map[K, E, P]) Get(k K) *E {
	if c.n == 0 {
		return nil
	}
	for e := *c.bucket(c.hash(k)); e != nil; e = *P(e).ChainNext() {
		if P(e).ChainKey() == k {
			return e
		}
	}
	return nil
}

// Put adds e, whose key no entry of the Map may have.
func (c *Map[K, E, P]) Put(e *E) {
	switch {
	case c.b == nil: // the first Put: Get and Delete look nothing up before it
		c.b = make([]*E, minBuckets)
		c.seed = maphash.MakeSeed()
	case c.old != nil:
		c.move(moveStep)
	case c.n >= len(c.b):
		c.old, c.b = c.b, make([]*E, 2*len(c.b))
		c.move(moveStep)
	}
	p := c.bucket(c.hash(P(e).ChainKey()))
	*P(e).ChainNext() = *p
	*p = e
	c.n++
}

// move moves up to n old buckets' entries to b, keeping each chain's
// order; the last one moved drops old. An old bucket i splits into b[i]
// and b[i+len(old)], which nothing fills before it moves.
func (c *Map[K, E, P]) move(n int) {
	for ; n > 0 && c.old != nil; n-- {
		i := c.moved
		tails := [2]**E{&c.b[i], &c.b[i+len(c.old)]}
		for e := c.old[i]; e != nil; {
			next := P(e).ChainNext()
			half := 0
			if int(c.hash(P(e).ChainKey())&uint64(len(c.b)-1)) != i {
				half = 1
			}
			*tails[half] = e
			tails[half] = next
			e, *next = *next, nil
		}
		c.old[i] = nil
		if c.moved++; c.moved == len(c.old) {
			c.old, c.moved = nil, 0
		}
	}
}

// Delete removes the entry with key k and returns it (nil: none).
func (c *Map[K, E, P]) Delete(k K) *E {
	if c.n == 0 {
		return nil
	}
	for p := c.bucket(c.hash(k)); *p != nil; p = P(*p).ChainNext() {
		e := *p
		if P(e).ChainKey() != k {
			continue
		}
		next := P(e).ChainNext()
		*p, *next = *next, nil
		c.n--
		return e
	}
	return nil
}

// Len is the number of entries.
func (c *Map[K, E, P]) Len() int { return c.n }

// All yields every entry, in no particular order. The entry yielded may
// be deleted during the iteration; others must not be, and none put.
func (c *Map[K, E, P]) All() iter.Seq[*E] {
	return func(yield func(*E) bool) {
		for _, bs := range [2][]*E{c.b, c.old[min(c.moved, len(c.old)):]} {
			for _, e := range bs {
				for e != nil {
					next := *P(e).ChainNext()
					if !yield(e) {
						return
					}
					e = next
				}
			}
		}
	}
}
