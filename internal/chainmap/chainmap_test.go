package chainmap

import (
	"math/rand/v2"
	"testing"
)

type key struct {
	a, b uint64
	pad  [48]byte
}

type entry struct {
	k    key
	v    int
	next *entry
}

func (e *entry) ChainKey() key      { return e.k }
func (e *entry) ChainNext() **entry { return &e.next }

type tmap = Map[key, entry, *entry]

// TestAgainstMap runs random puts, gets and deletes against a Go map, with
// real hashes and with every key colliding (one long chain).
func TestAgainstMap(t *testing.T) {
	for _, collide := range []bool{false, true} {
		var c tmap
		if collide {
			c.CollideForTest()
		}
		ref := map[key]*entry{}
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 20000 {
			k := key{a: uint64(r.IntN(300)), b: 7}
			switch r.IntN(3) {
			case 0:
				if ref[k] == nil {
					e := &entry{k: k, v: i}
					c.Put(e)
					ref[k] = e
				}
			case 1:
				if got, want := c.Delete(k), ref[k]; got != want {
					t.Fatalf("collide=%v: Delete(%v) = %p, want %p", collide, k.a, got, want)
				}
				delete(ref, k)
			}
			if got, want := c.Get(k), ref[k]; got != want {
				t.Fatalf("collide=%v: Get(%v) = %p, want %p", collide, k.a, got, want)
			}
			if c.Len() != len(ref) {
				t.Fatalf("collide=%v: Len = %d, want %d", collide, c.Len(), len(ref))
			}
		}
		seen := map[*entry]bool{}
		for e := range c.All() {
			if ref[e.k] != e || seen[e] {
				t.Fatalf("collide=%v: All yielded %v (in ref: %v, twice: %v)", collide, e.k.a, ref[e.k] == e, seen[e])
			}
			seen[e] = true
		}
		if len(seen) != len(ref) {
			t.Fatalf("collide=%v: All yielded %d, want %d", collide, len(seen), len(ref))
		}
	}
}

// TestChainPositions deletes the first, a middle and the last entry of
// one chain and checks the others stay reachable and unlinked ones keep
// no link.
func TestChainPositions(t *testing.T) {
	for del := range 3 {
		var c tmap
		c.CollideForTest()
		es := make([]*entry, 3)
		for i := range es {
			es[i] = &entry{k: key{a: uint64(i)}}
			c.Put(es[i])
		}
		// Put links at the head: the chain is 2, 1, 0.
		victim := es[2-del]
		if got := c.Delete(victim.k); got != victim {
			t.Fatalf("delete position %d: got %p, want %p", del, got, victim)
		}
		if victim.next != nil {
			t.Errorf("delete position %d: the removed entry keeps its link", del)
		}
		for _, e := range es {
			want := e
			if e == victim {
				want = nil
			}
			if got := c.Get(e.k); got != want {
				t.Errorf("delete position %d: Get(%d) = %p, want %p", del, e.k.a, got, want)
			}
		}
		if c.Delete(victim.k) != nil || c.Len() != 2 {
			t.Errorf("delete position %d: second Delete found it or Len = %d", del, c.Len())
		}
	}
}

// TestDeleteWhileIterating: the entry All yields may be deleted.
func TestDeleteWhileIterating(t *testing.T) {
	var c tmap
	c.CollideForTest()
	for i := range 10 {
		c.Put(&entry{k: key{a: uint64(i)}})
	}
	n := 0
	for e := range c.All() {
		c.Delete(e.k)
		n++
	}
	if n != 10 || c.Len() != 0 {
		t.Fatalf("yielded %d, %d left", n, c.Len())
	}
}

func TestZeroMap(t *testing.T) {
	var c tmap
	if c.Get(key{}) != nil || c.Delete(key{}) != nil || c.Len() != 0 {
		t.Fatal("the zero Map is not empty")
	}
	for range c.All() {
		t.Fatal("the zero Map yielded an entry")
	}
}

// TestGrowth puts entries one at a time and, after every Put (so in the
// middle of every move to a larger bucket array too), finds each, lists
// them all once, and checks the load: at most one entry per bucket once
// a move is done. With every key colliding, the one chain keeps the
// order Put made (newest first) through the moves.
func TestGrowth(t *testing.T) {
	for _, collide := range []bool{false, true} {
		var c tmap
		if collide {
			c.CollideForTest()
		}
		var es []*entry
		for i := range 600 {
			e := &entry{k: key{a: uint64(i), b: uint64(i * i)}, v: i}
			c.Put(e)
			es = append(es, e)
			for _, e := range es {
				if c.Get(e.k) != e {
					t.Fatalf("collide=%v, after %d Puts: %d not found", collide, i+1, e.v)
				}
			}
			seen := map[*entry]bool{}
			for e := range c.All() {
				if seen[e] {
					t.Fatalf("collide=%v, after %d Puts: %d yielded twice", collide, i+1, e.v)
				}
				seen[e] = true
			}
			if len(seen) != len(es) || c.Len() != len(es) {
				t.Fatalf("collide=%v, after %d Puts: %d yielded, Len %d", collide, i+1, len(seen), c.Len())
			}
			if c.old == nil && c.n > len(c.b) {
				t.Fatalf("collide=%v: %d entries in %d buckets", collide, c.n, len(c.b))
			}
			if collide && c.old == nil {
				v := i
				for e := c.b[0]; e != nil; e = e.next {
					if e.v != v {
						t.Fatalf("after %d Puts the chain holds %d where %d was", i+1, e.v, v)
					}
					v--
				}
			}
		}
		// Delete every other one, then the rest, in the middle of no move.
		for i, e := range es {
			if i%2 == 0 && c.Delete(e.k) != e {
				t.Fatalf("collide=%v: Delete %d", collide, i)
			}
		}
		for i, e := range es {
			want := e
			if i%2 == 0 {
				want = nil
			}
			if c.Get(e.k) != want {
				t.Fatalf("collide=%v: after deletes, Get %d", collide, i)
			}
		}
	}
}

// TestDeleteWhileMoving: Get, Delete and All in the middle of a move.
func TestDeleteWhileMoving(t *testing.T) {
	var c tmap
	var es []*entry
	for i := 0; c.old == nil; i++ {
		if i == 100 {
			t.Fatal("no move in progress after 100 Puts")
		}
		e := &entry{k: key{a: uint64(i)}, v: i}
		c.Put(e)
		es = append(es, e)
	}
	n := 0
	for e := range c.All() {
		if c.Delete(e.k) != e {
			t.Fatalf("Delete %d while moving", e.v)
		}
		n++
	}
	if n != len(es) || c.Len() != 0 {
		t.Fatalf("yielded %d of %d, %d left", n, len(es), c.Len())
	}
	for _, e := range es {
		if c.Get(e.k) != nil || e.next != nil {
			t.Fatalf("%d still found or linked", e.v)
		}
	}
}
