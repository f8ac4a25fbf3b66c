// Package indexheap is a binary min-heap of pointers that tells each
// element its index, so that an element can be removed or moved when its
// key changes (timers stopped or re-armed) without a search.
//
// container/heap does the same through an interface of five methods per
// element type and boxes every pushed and popped value in an `any`; here
// an element type says only the two things that differ, its order and
// where it keeps its index.
package indexheap

// Elem is what a Heap holds: a pointer to E that orders itself against
// another and keeps its index.
type Elem[E any] interface {
	*E
	// HeapLess reports whether the element goes before the other.
	HeapLess(other *E) bool
	// HeapIndex is the element's index field: its place in the heap, -1
	// once it is out (set it to -1 before its first Push if it is read
	// before).
	HeapIndex() *int32
}

// Heap is a min-heap of *E; the zero Heap is empty and ready to use. It
// is not safe for concurrent use.
type Heap[E any, P Elem[E]] struct {
	h []*E
}

func (q *Heap[E, P]) less(a, b *E) bool { return P(a).HeapLess(b) }
func (q *Heap[E, P]) index(e *E) *int32 { return P(e).HeapIndex() }

// Len is the number of elements.
func (q *Heap[E, P]) Len() int { return len(q.h) }

// Top is the least element (nil: empty).
func (q *Heap[E, P]) Top() *E {
	if len(q.h) == 0 {
		return nil
	}
	return q.h[0]
}

// Push adds e, which must not be in the heap.
func (q *Heap[E, P]) Push(e *E) {
	q.h = append(q.h, e)
	*q.index(e) = int32(len(q.h) - 1)
	q.up(len(q.h) - 1)
}

// Pop removes and returns the least element (nil: empty).
func (q *Heap[E, P]) Pop() *E {
	if len(q.h) == 0 {
		return nil
	}
	return q.Remove(q.h[0])
}

// Remove takes e, which must be in the heap, out of it and returns it.
func (q *Heap[E, P]) Remove(e *E) *E {
	i := int(*q.index(e))
	last := len(q.h) - 1
	if i != last {
		q.swap(i, last)
	}
	q.h[last] = nil
	q.h = q.h[:last]
	*q.index(e) = -1
	if i != last {
		q.Fix(q.h[i])
	}
	return e
}

// Fix restores the order after e's key changed; e must be in the heap.
func (q *Heap[E, P]) Fix(e *E) {
	i := int(*q.index(e))
	if !q.down(i) {
		q.up(i)
	}
}

func (q *Heap[E, P]) swap(i, j int) {
	q.h[i], q.h[j] = q.h[j], q.h[i]
	*q.index(q.h[i]), *q.index(q.h[j]) = int32(i), int32(j)
}

func (q *Heap[E, P]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(q.h[i], q.h[p]) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

// down moves the element at i down; it reports whether it moved.
func (q *Heap[E, P]) down(i int) bool {
	i0 := i
	for {
		c := 2*i + 1
		if c >= len(q.h) {
			break
		}
		if r := c + 1; r < len(q.h) && q.less(q.h[r], q.h[c]) {
			c = r
		}
		if !q.less(q.h[c], q.h[i]) {
			break
		}
		q.swap(i, c)
		i = c
	}
	return i > i0
}

// Clear empties the heap, setting every element's index to -1.
func (q *Heap[E, P]) Clear() {
	for _, e := range q.h {
		*q.index(e) = -1
	}
	clear(q.h)
	q.h = q.h[:0]
}
