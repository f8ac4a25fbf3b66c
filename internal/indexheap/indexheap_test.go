package indexheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type item struct {
	k, n int
	at   int32
}

func (a *item) HeapLess(b *item) bool {
	if a.k != b.k {
		return a.k < b.k
	}
	return a.n < b.n
}

func (a *item) HeapIndex() *int32 { return &a.at }

type iheap = Heap[item, *item]

func newHeap() *iheap { return &iheap{} }

// check verifies the heap order and every element's index.
func check(t *testing.T, q *iheap) {
	t.Helper()
	for i, x := range q.h {
		if int(x.at) != i {
			t.Fatalf("element at %d says %d", i, x.at)
		}
		if i > 0 && q.less(x, q.h[(i-1)/2]) {
			t.Fatalf("element at %d is less than its parent", i)
		}
	}
}

// TestRandomOps pushes, pops, removes and re-keys at random, checking the
// order and the indexes after each step and the pops against a sorted
// reference.
func TestRandomOps(t *testing.T) {
	q := newHeap()
	var in []*item
	r := rand.New(rand.NewPCG(3, 4))
	for n := range 20000 {
		switch op := r.IntN(4); {
		case op == 0 || len(in) == 0:
			x := &item{k: r.IntN(100), n: n}
			q.Push(x)
			in = append(in, x)
		case op == 1:
			want := slices.MinFunc(in, func(a, b *item) int {
				if q.less(a, b) {
					return -1
				}
				return 1
			})
			if got := q.Pop(); got != want || got.at != -1 {
				t.Fatalf("Pop = %+v, want %+v (index -1)", got, want)
			}
			in = slices.DeleteFunc(in, func(x *item) bool { return x == want })
		case op == 2:
			i := r.IntN(len(in))
			x := in[i]
			if q.Remove(x) != x || x.at != -1 {
				t.Fatalf("Remove(%+v) failed", x)
			}
			in = slices.Delete(in, i, i+1)
		default:
			x := in[r.IntN(len(in))]
			x.k = r.IntN(100)
			q.Fix(x)
		}
		check(t, q)
		if q.Len() != len(in) {
			t.Fatalf("Len %d, want %d", q.Len(), len(in))
		}
	}
	for q.Len() > 0 {
		x := q.Pop()
		if top := q.Top(); top != nil && q.less(top, x) {
			t.Fatalf("popped %+v before %+v", x, top)
		}
	}
	if q.Pop() != nil || q.Top() != nil {
		t.Fatal("an empty heap popped or showed an element")
	}
}
