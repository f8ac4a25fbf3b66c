package ike

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"
)

// changeMirror is what a monitor knows from listings of changes only:
// the IKE SAs and children as the listings since the first showed them.
// checkChanges keeps one per engine of every ike test, after every turn
// of the loop, and compares it with what a full listing shows: a change
// the engine made without marking its IKE SA (changes.go), or a child
// gone without a tombstone, fails the test that made it.
type changeMirror struct {
	cur  Cursor
	ikes map[uint32]IKESAInfo
	kids map[uint32]ChildInfo
	errs []string
}

// mirrorFullEvery: with more IKE SAs than this the per-turn comparison
// is skipped (the mirror is still kept, and compared at the end).
const mirrorFullEvery = 64

// views is what a listing without counters shows of the SAs of refs
// (all of them in e.sas: it runs on the loop).
func views(refs []saRef) []IKESAInfo {
	tc := newTextCache()
	u := &usageView{omit: true}
	out := make([]IKESAInfo, 0, len(refs))
	var kids []childSnap
	for _, r := range refs {
		var s saSnap
		kids = r.sa.snap(&s, kids[:0])
		s.children = kids
		out = append(out, s.info(u, &tc))
	}
	return out
}

// checkChanges installs the per-turn check on e; the returned function
// (run before e closes) checks a last time and reports what was found.
func checkChanges(t testing.TB, e *Engine) func() {
	m := &changeMirror{ikes: map[uint32]IKESAInfo{}, kids: map[uint32]ChildInfo{}}
	step := func(full bool) {
		next, refs, tombs, err := e.since(m.cur)
		if err != nil {
			m.errs = append(m.errs, fmt.Sprintf("since %s: %v", m.cur, err))
			return
		}
		m.cur = next
		slices.SortFunc(refs, func(a, b saRef) int { return int(a.id) - int(b.id) })
		ikes, kids := splitTombs(refs, aliveChildren(refs), tombs)
		// Applied after the entries: a tombstone of what is listed again
		// would show as a loss.
		for _, v := range views(refs) {
			m.ikes[v.ID] = v
			for _, c := range v.Children {
				m.kids[c.ID] = c
			}
		}
		for _, d := range ikes {
			delete(m.ikes, d.IKEID)
		}
		for _, d := range kids {
			delete(m.kids, d.ChildID)
		}
		if !full && len(e.sas) > mirrorFullEvery {
			return
		}
		all := make([]saRef, 0, len(e.sas))
		for _, sa := range e.sas {
			all = append(all, saRef{sa.id, sa})
		}
		want, wantKids := map[uint32]IKESAInfo{}, map[uint32]ChildInfo{}
		for _, v := range views(all) {
			want[v.ID] = v
			for _, c := range v.Children {
				wantKids[c.ID] = c
			}
		}
		if !reflect.DeepEqual(want, m.ikes) || !reflect.DeepEqual(wantKids, m.kids) {
			if len(m.errs) < 5 {
				m.errs = append(m.errs, fmt.Sprintf("the listings of changes (to %s) disagree with a full listing:\n%s", m.cur, mirrorDiff(want, m.ikes, wantKids, m.kids)))
			}
			m.ikes, m.kids = want, wantKids // from here on, the next disagreement
		}
	}
	_ = e.call(t.Context(), func() { e.chg.verify = func() { step(false) } })
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The last turn, compared in full however many SAs there are.
		_ = e.call(ctx, func() {
			step(true)
			e.chg.verify = nil
		})
		for _, s := range m.errs {
			t.Errorf("%s", s)
		}
	}
}

func mirrorDiff(want, got map[uint32]IKESAInfo, wantKids, gotKids map[uint32]ChildInfo) string {
	var s string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[id]; !ok {
			s += fmt.Sprintf("  IKE SA %d missing: %+v\n", id, want[id])
		} else if !reflect.DeepEqual(g, want[id]) {
			s += fmt.Sprintf("  IKE SA %d\n    listed %+v\n    is     %+v\n", id, g, want[id])
		}
	}
	for _, id := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[id]; !ok {
			s += fmt.Sprintf("  IKE SA %d gone without a tombstone: %+v\n", id, got[id])
		}
	}
	for _, id := range slices.Sorted(maps.Keys(wantKids)) {
		if _, ok := gotKids[id]; !ok {
			s += fmt.Sprintf("  child %d missing\n", id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(gotKids)) {
		if _, ok := wantKids[id]; !ok {
			s += fmt.Sprintf("  child %d (IKE SA %d) gone without a tombstone\n", id, gotKids[id].IKEID)
		}
	}
	return s
}
