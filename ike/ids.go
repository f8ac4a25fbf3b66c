package ike

import (
	"context"
	"fmt"
	"time"
)

// Unique SA IDs, as charon's uniqueid: every IKE SA and every CHILD SA
// gets the next number of its kind when it is created (a rekey makes a
// new SA, so a new ID), starting at 1 and never given twice while the
// engine runs. Names are not enough to point at one SA: a responder
// has many IKE SAs of one %any connection, and a peer's child narrowed
// onto ours makes two CHILD SAs of one name and reqid.

// saIDs are the last IDs given. Loop-owned.
type saIDs struct{ ike, child uint32 }

func (e *Engine) newIKEID() uint32 {
	e.ids.ike++
	return e.ids.ike
}

func (e *Engine) newChildID() uint32 {
	e.ids.child++
	return e.ids.child
}

// ikeID is the ID of the child's IKE SA (0 before it has one).
func (ch *childSA) ikeID() uint32 {
	if ch.ike == nil {
		return 0
	}
	return ch.ike.id
}

// ikeByID finds a live IKE SA by its ID. Runs on the loop.
func (e *Engine) ikeByID(id uint32) *ikeSA {
	if id == 0 {
		return nil
	}
	for _, sa := range e.sas {
		if sa.id == id && sa.state != ikeDead {
			return sa
		}
	}
	return nil
}

// childByID finds a child by its ID, with its IKE SA. Runs on the loop.
func (e *Engine) childByID(id uint32) (*ikeSA, *childSA) {
	if id == 0 {
		return nil, nil
	}
	for _, sa := range e.sas {
		for _, ch := range sa.children {
			if ch.id == id {
				return sa, ch
			}
		}
	}
	return nil, nil
}

// TerminateIKESA deletes the IKE SA with unique ID id and its children,
// telling the peer, and waits until it is gone. An unknown ID is
// ErrNotFound.
func (e *Engine) TerminateIKESA(ctx context.Context, id uint32) error {
	var err error
	if cerr := e.call(ctx, func() {
		sa := e.ikeByID(id)
		if sa == nil {
			err = fmt.Errorf("%w: no IKE SA with ID %d", ErrNotFound, id)
			return
		}
		if sa.state != ikeDeleting {
			sa.startDelete("terminated by command")
		}
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	return e.waitGone(ctx, func() bool { return e.ikeByID(id) != nil })
}

// TerminateChildSA deletes the installed CHILD SA with unique ID id,
// telling the peer, and waits until it is gone; other children of the
// same name stay. An unknown ID is ErrNotFound; a child not installed
// (still negotiating, or being deleted) is refused.
func (e *Engine) TerminateChildSA(ctx context.Context, id uint32) error {
	var err error
	if cerr := e.call(ctx, func() {
		sa, ch := e.childByID(id)
		switch {
		case ch == nil:
			err = fmt.Errorf("%w: no CHILD SA with ID %d", ErrNotFound, id)
		case ch.state != childInstalled:
			err = fmt.Errorf("CHILD SA %d (%s) is %s, not installed", id, ch.cfg.Name, ch.state)
		default:
			sa.deleteChild(ch, "terminated by command")
		}
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	return e.waitGone(ctx, func() bool { _, ch := e.childByID(id); return ch != nil })
}

// RekeyIKESA rekeys the established IKE SA with unique ID id now (its
// children move to the new IKE SA, which has a new ID). It returns once
// the exchange has started.
func (e *Engine) RekeyIKESA(ctx context.Context, id uint32) error {
	var err error
	if cerr := e.call(ctx, func() {
		sa := e.ikeByID(id)
		switch {
		case sa == nil:
			err = fmt.Errorf("%w: no IKE SA with ID %d", ErrNotFound, id)
		case sa.state != ikeEstablished || sa.pendingOf != nil:
			err = fmt.Errorf("IKE SA %d (%s) is %s, not established", id, sa.name(), sa.stateText())
		default:
			sa.rekeyIKE()
		}
	}); cerr != nil {
		return cerr
	}
	return err
}

// RekeyChildSA rekeys the installed CHILD SA with unique ID id now (the
// new CHILD SA has a new ID). It returns once the exchange has started.
func (e *Engine) RekeyChildSA(ctx context.Context, id uint32) error {
	var err error
	if cerr := e.call(ctx, func() {
		sa, ch := e.childByID(id)
		switch {
		case ch == nil:
			err = fmt.Errorf("%w: no CHILD SA with ID %d", ErrNotFound, id)
		case ch.state != childInstalled:
			err = fmt.Errorf("CHILD SA %d (%s) is %s, not installed", id, ch.cfg.Name, ch.state)
		default:
			sa.rekeyChild(ch)
		}
	}); cerr != nil {
		return cerr
	}
	return err
}

// waitGone polls the loop until there no longer holds.
func (e *Engine) waitGone(ctx context.Context, there func() bool) error {
	for {
		busy := false
		if cerr := e.call(ctx, func() { busy = there() }); cerr != nil {
			return cerr
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
