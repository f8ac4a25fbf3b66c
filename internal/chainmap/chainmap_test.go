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
