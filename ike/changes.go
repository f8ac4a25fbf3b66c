package ike

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
)

// Listings of what changed (Engine.Changes): a monitor that lists every
// 0.2 s asks only for the IKE SAs added or changed since its last
// listing, and the ones deleted since, instead of all of them.
//
// Every change to what a listing shows of an IKE SA or of its children
// (state, SPIs, addresses, suites, selectors, children added, moved or
// gone, the rekey flag, ...) marks the IKE SA with the next generation of
// the engine and moves it to the end of a list of the SAs by their last
// change: a listing since a cursor walks that list back from its end
// until it meets an SA not changed since, so it costs what changed, not
// what is there. The list's nodes are one slice reused as SAs come and
// go (28 bytes per SA with the index in the SA, nothing allocated per
// SA). Deletions go to a journal of tombstones bounded to changeJournal
// entries: a cursor older than its oldest is refused with a CursorError
// (ErrCursorExpired), and the caller lists everything again (the zero
// cursor), as etcd refuses a compacted revision.

// changeJournal bounds the tombstones kept: 16 bytes each, 1 MiB when
// full; a monitor polling every 0.2 s keeps its cursor while fewer than
// 65,536 IKE SAs and children end between two of its listings.
const changeJournal = 1 << 16

// chgNode is an IKE SA's place in the change list: its generation and
// its neighbours. The nodes live in one slice of the engine, reused as
// SAs come and go (the IKE SA holds its node's index, 4 bytes: the
// 24 of a node inside ikeSA would move it to the next size class,
// 128 bytes more per IKE SA).
type chgNode struct {
	sa         *ikeSA
	gen        uint64
	prev, next uint32 // indexes in nodes, 0: none
}

// tombstone is a deletion in the journal: an IKE SA (child 0) or a
// child.
type tombstone struct {
	gen   uint64
	ike   uint32
	child uint32
}

// changeLog is the engine's record of changes. Loop-owned.
type changeLog struct {
	epoch      uint32
	gen        uint64
	nodes      []chgNode // nodes[0] is never used: index 0 is "none"
	free       uint32    // the first unused node, threaded through next
	head, tail uint32    // least and most recently changed
	journal    []tombstone
	start      int    // the oldest tombstone, once the journal is full
	dropped    uint64 // the generation of the newest tombstone dropped
	max        int    // 0: changeJournal (tests set fewer)
	// verify, when set (tests), runs after every turn of the loop.
	verify func()
}

// changed marks sa as changed, if it is listed (in e.sas). Runs on the
// loop.
func (e *Engine) changed(sa *ikeSA) {
	if sa == nil || sa.chg == 0 {
		return
	}
	c := &e.chg
	c.gen++
	c.nodes[sa.chg].gen = c.gen
	if c.tail == sa.chg {
		return
	}
	c.unlink(sa.chg)
	c.append(sa.chg)
}

// childChanged marks ch's IKE SA as changed.
func (e *Engine) childChanged(ch *childSA) {
	if ch.listed {
		e.changed(ch.ike)
	}
}

func (c *changeLog) unlink(i uint32) {
	n := &c.nodes[i]
	if n.prev != 0 {
		c.nodes[n.prev].next = n.next
	} else if c.head == i {
		c.head = n.next
	}
	if n.next != 0 {
		c.nodes[n.next].prev = n.prev
	} else if c.tail == i {
		c.tail = n.prev
	}
	n.prev, n.next = 0, 0
}

func (c *changeLog) append(i uint32) {
	c.nodes[i].prev = c.tail
	if c.tail != 0 {
		c.nodes[c.tail].next = i
	} else {
		c.head = i
	}
	c.tail = i
}

// listedSA puts sa, just added to e.sas, on the change list.
func (e *Engine) listedSA(sa *ikeSA) {
	if sa.chg == 0 {
		c := &e.chg
		if len(c.nodes) == 0 {
			c.nodes = append(c.nodes, chgNode{})
		}
		if c.free != 0 {
			sa.chg = c.free
			c.free = c.nodes[c.free].next
			c.nodes[sa.chg] = chgNode{sa: sa}
		} else {
			sa.chg = uint32(len(c.nodes))
			c.nodes = append(c.nodes, chgNode{sa: sa})
		}
		c.append(sa.chg)
	}
	e.changed(sa)
}

// unlistedSA takes sa, just removed from e.sas, off the change list, and
// journals its end and that of the children it still lists.
func (e *Engine) unlistedSA(sa *ikeSA) {
	if sa.chg == 0 {
		return
	}
	c := &e.chg
	c.unlink(sa.chg)
	c.nodes[sa.chg] = chgNode{next: c.free}
	c.free, sa.chg = sa.chg, 0
	c.gen++
	for _, ch := range sa.children {
		if ch.listed {
			c.bury(tombstone{c.gen, sa.id, ch.id})
		}
	}
	c.bury(tombstone{c.gen, sa.id, 0})
}

// childGone journals the end of listed child ch of sa (dropped from its
// children, or all of them gone with the SA) and marks sa as changed.
func (e *Engine) childGone(sa *ikeSA, ch *childSA) {
	if sa == nil || sa.chg == 0 || !ch.listed {
		return
	}
	e.changed(sa)
	e.chg.bury(tombstone{e.chg.gen, sa.id, ch.id})
}

// childrenGone journals the end of all of sa's children (destroy).
func (e *Engine) childrenGone(sa *ikeSA) {
	for _, ch := range sa.children {
		e.childGone(sa, ch)
	}
}

// bury adds t to the journal, dropping the oldest when it is full.
func (c *changeLog) bury(t tombstone) {
	max := c.max
	if max == 0 {
		max = changeJournal
	}
	if len(c.journal) < max {
		c.journal = append(c.journal, t)
		return
	}
	c.dropped = c.journal[c.start].gen
	c.journal[c.start] = t
	c.start = (c.start + 1) % len(c.journal)
}

// cursor is where the engine is now.
func (c *changeLog) cursor() Cursor {
	if c.epoch == 0 {
		c.epoch = rand.Uint32() | 1
	}
	return Cursor{epoch: c.epoch, gen: c.gen}
}

// since is what changed after cursor s: the SAs changed (all of them for
// the zero cursor) and the tombstones, oldest first. Runs on the loop.
func (e *Engine) since(s Cursor) (next Cursor, refs []saRef, tombs []tombstone, err error) {
	c := &e.chg
	next = c.cursor()
	if s.IsZero() {
		refs = make([]saRef, 0, len(e.sas))
		for _, sa := range e.sas {
			refs = append(refs, saRef{sa.id, sa})
		}
		return next, refs, nil, nil
	}
	switch {
	case s.epoch != c.epoch:
		return next, nil, nil, &CursorError{s, "not from this run of the engine"}
	case s.gen > c.gen:
		return next, nil, nil, &CursorError{s, "ahead of the engine"}
	case s.gen < c.dropped:
		return next, nil, nil, &CursorError{s, fmt.Sprintf("older than the journal of deletions (it keeps %d, from generation %d)", len(c.journal), c.dropped)}
	}
	for i := c.tail; i != 0 && c.nodes[i].gen > s.gen; i = c.nodes[i].prev {
		sa := c.nodes[i].sa
		refs = append(refs, saRef{sa.id, sa})
	}
	n := len(c.journal)
	for i := n - 1; i >= 0; i-- {
		t := c.journal[(c.start+i)%n]
		if t.gen <= s.gen {
			break
		}
		tombs = append(tombs, t)
	}
	slices.Reverse(tombs)
	return next, refs, tombs, nil
}

// Deleted is an IKE SA (ChildID 0) or a child that a listing of changes
// says is gone.
type Deleted struct {
	IKEID   uint32 `json:"ike_id"`
	ChildID uint32 `json:"child_id,omitempty"`
}

// ChangeOptions tune a listing of changes.
type ChangeOptions struct {
	// Counters reads the children's counters in one bulk read of the
	// dataplane, as a full listing does. Without it the dataplane is not
	// read: the children carry no counters (CountersOmitted).
	Counters bool
}

// Changes is a listing of what changed after a cursor: the IKE SAs added
// or changed (IKESAs, Children) and the ones deleted (DeletedIKESAs,
// DeletedChildren), and the cursor for the next listing (Next).
type Changes struct {
	// Next is the cursor to pass to the next listing. Whatever changes
	// after it was taken is in the listing after it, even when this one
	// shows it already: a listing is at least once, never a miss.
	Next Cursor
	// DeletedIKESAs are the IKE SAs deleted after the cursor (their
	// children with them), oldest first, leaving out those the listing
	// shows again.
	DeletedIKESAs []Deleted
	// DeletedChildren are the children gone after the cursor (deleted,
	// rekeyed away, or with their IKE SA), leaving out those the listing
	// shows again (a child moved to the IKE SA that replaced its own).
	DeletedChildren []Deleted

	e    *Engine
	refs []saRef
	opts ChangeOptions
	u    usageView
}

// Changes starts a listing of what changed after since (the zero
// Cursor: everything). It takes, in one call on the loop, the cursor for
// the next listing, which IKE SAs changed and the tombstones since; the
// SAs' entries are copied and made as IKESAs or Children is iterated,
// as a full listing's are (ListIKESAs): an SA deleted meanwhile is left
// out (its tombstone is in the next listing). A child is listed when
// anything a listing shows of its IKE SA or of any child of that SA
// changed. A cursor the engine cannot answer for is a *CursorError.
func (e *Engine) Changes(ctx context.Context, since Cursor, opts ChangeOptions) (*Changes, error) {
	c := &Changes{e: e, opts: opts}
	var tombs []tombstone
	var err error
	var alive map[uint32]bool
	if cerr := e.listCall(ctx, func() {
		c.Next, c.refs, tombs, err = e.since(since)
		c.u.readAt, c.u.lastChild = e.clk.Now(), e.ids.child
		if err != nil || len(tombs) == 0 {
			return
		}
		// A tombstone of what is listed again (a child moved to another
		// IKE SA) is left out.
		alive = aliveChildren(c.refs)
	}); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(c.refs, func(a, b saRef) int { return cmp.Compare(a.id, b.id) })
	c.DeletedIKESAs, c.DeletedChildren = splitTombs(c.refs, alive, tombs)
	return c, nil
}

// splitTombs is the tombstones as deleted IKE SAs and children, less
// those listed again (IKE SAs in refs, sorted by ID; children in alive)
// and each child once: a child's exchange takes it off its IKE SA's
// children while the answer is read and puts it back (create_child.go),
// so a child that ends may have more than one tombstone.
func splitTombs(refs []saRef, alive map[uint32]bool, tombs []tombstone) (ikes, kids []Deleted) {
	var seen map[uint32]bool
	// Newest first, so that a child's last tombstone names the IKE SA
	// it last had; put back in order below.
	for i := len(tombs) - 1; i >= 0; i-- {
		t := tombs[i]
		if t.child != 0 {
			if alive[t.child] || seen[t.child] {
				continue
			}
			if seen == nil {
				seen = map[uint32]bool{}
			}
			seen[t.child] = true
			kids = append(kids, Deleted{IKEID: t.ike, ChildID: t.child})
			continue
		}
		if _, ok := slices.BinarySearchFunc(refs, t.ike, func(r saRef, id uint32) int { return cmp.Compare(r.id, id) }); !ok {
			ikes = append(ikes, Deleted{IKEID: t.ike})
		}
	}
	slices.Reverse(ikes)
	slices.Reverse(kids)
	return ikes, kids
}

// aliveChildren is the IDs of the children the SAs of refs list. Runs on
// the loop.
func aliveChildren(refs []saRef) map[uint32]bool {
	alive := map[uint32]bool{}
	for _, r := range refs {
		for _, ch := range r.sa.children {
			if ch.listed {
				alive[ch.id] = true
			}
		}
	}
	return alive
}

// Len is how many IKE SAs the listing shows (at most: one deleted
// meanwhile is left out).
func (c *Changes) Len() int { return len(c.refs) }

// IKESAs streams the IKE SAs added or changed, with their children, in
// the order of their IDs.
func (c *Changes) IKESAs(ctx context.Context) iter.Seq2[IKESAInfo, error] {
	return ikeInfos(ctx, c.walk)
}

func (c *Changes) walk(ctx context.Context, each snapFunc) error {
	return c.e.walkRefs(ctx, c.refs, c.u, c.opts.Counters, each)
}

// Children streams the children of the IKE SAs added or changed, in the
// order of IKESAs.
func (c *Changes) Children(ctx context.Context) iter.Seq2[ChildInfo, error] {
	return childInfos(ctx, c.walk)
}
