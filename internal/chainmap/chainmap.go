// Package chainmap is a map from a large comparable key to entries that
// hold their own key, kept under a 64-bit hash of the key with the
// entries of equal hashes chained through the entries themselves.
//
// A Go map keyed by a large key (a PolicyID is 88 octets, a SAID 64)
// keeps a copy of the key in every slot beside the entry that already
// holds it; at 100,000 tunnels with several such maps that copy was a
// large part of the memory per tunnel. Here a slot is 16 octets and an
// entry pays one pointer for its chain link.
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
	m       map[uint64]*E
	seed    maphash.Seed
	n       int
	collide bool
}

// CollideForTest makes every key hash alike, so that tests exercise the
// chains. Call it on an empty Map.
func (c *Map[K, E, P]) CollideForTest() { c.collide = true }

func (c *Map[K, E, P]) hash(k K) uint64 {
	if c.collide {
		return 0
	}
	return maphash.Comparable(c.seed, k)
}

// Get returns the entry with key k (nil: none).
func (c *Map[K, E, P]) Get(k K) *E {
	if c.n == 0 {
		return nil
	}
	for e := c.m[c.hash(k)]; e != nil; e = *P(e).ChainNext() {
		if P(e).ChainKey() == k {
			return e
		}
	}
	return nil
}

// Put adds e, whose key no entry of the Map may have.
func (c *Map[K, E, P]) Put(e *E) {
	if c.m == nil { // the first Put: Get and Delete look nothing up before it
		c.m = map[uint64]*E{}
		c.seed = maphash.MakeSeed()
	}
	h := c.hash(P(e).ChainKey())
	*P(e).ChainNext() = c.m[h]
	c.m[h] = e
	c.n++
}

// Delete removes the entry with key k and returns it (nil: none).
func (c *Map[K, E, P]) Delete(k K) *E {
	if c.n == 0 {
		return nil
	}
	h := c.hash(k)
	var prev *E
	for e := c.m[h]; e != nil; prev, e = e, *P(e).ChainNext() {
		if P(e).ChainKey() != k {
			continue
		}
		next := P(e).ChainNext()
		switch {
		case prev != nil:
			*P(prev).ChainNext() = *next
		case *next == nil:
			delete(c.m, h)
		default:
			c.m[h] = *next
		}
		*next = nil
		c.n--
		return e
	}
	return nil
}

// Len is the number of entries.
func (c *Map[K, E, P]) Len() int { return c.n }

// All yields every entry, in no particular order. The entry yielded may
// be deleted during the iteration; others must not be.
func (c *Map[K, E, P]) All() iter.Seq[*E] {
	return func(yield func(*E) bool) {
		for _, e := range c.m {
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
