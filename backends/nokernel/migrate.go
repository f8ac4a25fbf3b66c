package nokernel

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
)

// Migrate moves a child's SAs and policy templates from the old outer
// addresses to the new ones (MOBIKE), keeping keys, counters, replay
// state, lifetimes and idle watches, and reports it with a MigrateEvent
// per policy, as XFRM_MSG_MIGRATE does. Everything is checked before
// anything moves: a missing SA or policy is ErrNotFound, an SA that does
// not join the old endpoints (or carries another reqid) ErrInvalid, a
// taken new id ErrExists.
//
// Encap replaces the SAs' UDP encapsulation: as given on the outbound SA
// (Local -> Remote), with the ports swapped on the inbound one; nil
// removes it.
func (b *model) Migrate(ctx context.Context, m kernelops.Migration) error {
	bad := func(field, f string, a ...any) error { return kernelops.Invalid("", "", "", field, f, a...) }
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}

	type saMove struct {
		e   *saEntry
		new kernelops.SAID
		out bool
	}
	var moves []saMove
	taken := map[spiKey]bool{}
	for i, id := range m.SAs {
		field := fmt.Sprintf("SAs[%d]", i)
		e := b.sad.find(id)
		if e == nil || e.state == kernelops.SALarval {
			return errno(syscall.ESRCH, "no such SA")
		}
		nid := id
		var out bool
		switch {
		case id.Src == m.Old.Local && id.Dst == m.Old.Remote:
			nid.Src, nid.Dst, out = m.New.Local, m.New.Remote, true
		case id.Src == m.Old.Remote && id.Dst == m.Old.Local:
			nid.Src, nid.Dst = m.New.Remote, m.New.Local
		default:
			return bad(field, "SA %s does not join the old endpoints", id)
		}
		if m.ReqID != 0 && e.reqID != m.ReqID {
			return bad(field, "SA %s has reqid %d, not %d", id, e.reqID, m.ReqID)
		}
		k := keyOf(nid)
		if (keyOf(id) != k && b.sad.find(nid) != nil) || taken[k] {
			return errno(syscall.EEXIST, "an SA holds the new id")
		}
		taken[k] = true
		moves = append(moves, saMove{e, nid, out})
	}
	var pols []*polEntry
	for _, pid := range m.Policies {
		e := b.spd.get(pid)
		if e == nil {
			return errno(syscall.ENOENT, "no such policy")
		}
		pols = append(pols, e)
	}

	// Apply: nothing below fails.
	for _, mv := range moves {
		b.sad.unlink(mv.e)
		mv.e.setID(mv.new)
		if m.Encap == nil {
			mv.e.setEncap(nil)
		} else {
			enc := *m.Encap
			if !mv.out {
				enc.SrcPort, enc.DstPort = enc.DstPort, enc.SrcPort
			}
			mv.e.setEncap(&enc)
		}
		if mv.e.x != nil {
			mv.e.x.mapping = netip.AddrPort{}
		}
		b.sad.insert(mv.e, false)
	}
	var events []*kernelops.MigrateEvent
	for _, e := range pols {
		ev := &kernelops.MigrateEvent{Policy: e.id()}
		var one [1]kernelops.Template
		ts := e.templates(&one)
		if !e.is(polOne) {
			ts = append([]kernelops.Template(nil), ts...) // setTemplates copies them back
		}
		for i := range ts {
			t := &ts[i]
			if m.ReqID != 0 && t.ReqID != m.ReqID {
				continue
			}
			var nl, nr = t.Src, t.Dst
			switch {
			case t.Src == m.Old.Local && t.Dst == m.Old.Remote:
				nl, nr = m.New.Local, m.New.Remote
			case t.Src == m.Old.Remote && t.Dst == m.Old.Local:
				nl, nr = m.New.Remote, m.New.Local
			default:
				continue
			}
			ev.Entries = append(ev.Entries, kernelops.MigrateEntry{Proto: t.Proto, Mode: t.Mode, ReqID: t.ReqID,
				Old: kernelops.Endpoints{Local: t.Src, Remote: t.Dst}, New: kernelops.Endpoints{Local: nl, Remote: nr}})
			t.Src, t.Dst = nl, nr
		}
		e.setTemplates(ts)
		events = append(events, ev)
	}
	if len(pols) == 0 && len(moves) > 0 {
		ev := &kernelops.MigrateEvent{}
		for _, mv := range moves {
			ev.Entries = append(ev.Entries, kernelops.MigrateEntry{Proto: mv.e.proto, Mode: mv.e.mode,
				ReqID: mv.e.reqID, Old: m.Old, New: m.New})
		}
		events = append(events, ev)
	}
	for _, ev := range events {
		b.env.Publish(ev)
	}
	return nil
}
