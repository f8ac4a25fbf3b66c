package ike

import (
	"fmt"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// readEvents forwards dataplane events to the loop.
func (e *Engine) readEvents(sub kernelops.Subscription) {
	defer e.wg.Done()
	for ev := range sub.Events() {
		if _, ok := ev.(*kernelops.RouteEvent); ok {
			// A burst of route changes needs one look at the SAs waiting
			// to move, not one per route (links.go).
			if !e.routePending.Swap(true) {
				e.post(e.routesChanged)
			}
			continue
		}
		e.post(func() { e.kernelEvent(ev) })
	}
}

func (e *Engine) kernelEvent(ev kernelops.Event) {
	switch x := ev.(type) {
	case *kernelops.AcquireEvent:
		e.publish(Event{Kind: "dataplane", State: "acquire", Detail: fmt.Sprintf("reqid %#x %s -> %s packet %s", x.ReqID, x.Src, x.Dst, x.Packet)})
		e.acquire(x)
	case *kernelops.ExpireEvent:
		e.expire(x)
	case *kernelops.IdleEvent:
		e.idleEvent(x)
	case *kernelops.LinkEvent:
		e.linkEvent(x)
	case *kernelops.AddrEvent:
		e.addrEvent(x)
	case *kernelops.MappingEvent:
		e.mappingEvent(x)
	case *kernelops.OverrunEvent:
		e.publish(Event{Kind: "dataplane", State: "overrun", Detail: fmt.Sprintf("%d events lost (%s)", x.Lost, x.Source)})
		e.log.Warn("dataplane events were lost: re-reading the SAD and SPD", "lost", x.Lost, "from", x.Source)
		e.resync()
		e.resyncLiveness()
	}
}

// acquire initiates the trap child whose policy matched.
func (e *Engine) acquire(a *kernelops.AcquireEvent) {
	name := e.childNameOf(a.ReqID)
	if name == "" {
		e.log.Debug("acquire for a reqid we do not own", "reqid", a.ReqID)
		return
	}
	c, ch := e.cfg.Child(name)
	if ch == nil || (ch.StartAction != config.StartTrap && !e.recoveryTraps[name]) {
		return
	}
	if e.childBusy(c.Name, name) {
		e.log.Debug("acquire for a child already up or under way", "child", name)
		return
	}
	e.log.Info("acquire: initiating", "child", name, "packet", a.Packet.String())
	e.initiate(c, ch, a, nil)
}

// findChild finds an installed child by one of its SA ids.
func (e *Engine) findChild(id kernelops.SAID) *childSA { return e.bySA.get(id) }

// expire: a hard expire deletes the child and tells the peer; a soft one
// marks the child for rekeying.
func (e *Engine) expire(x *kernelops.ExpireEvent) {
	ch := e.findChild(x.SA)
	if ch == nil {
		return
	}
	if !x.Hard {
		ch.rekey = true
		e.childChanged(ch) // changes.go
		ch.logger().Info("soft lifetime reached: rekeying", "limit", x.Limit.String())
		e.publish(Event{Kind: "child", ChildID: ch.id, IKEID: ch.ikeID(), Name: ch.cfg.Name, State: "rekey-needed", Reason: "soft " + x.Limit.String() + " limit"})
		e.scheduleRekey(ch)
		return
	}
	e.publish(Event{Kind: "dataplane", State: "hard-expire", ChildID: ch.id, IKEID: ch.ikeID(), Name: ch.cfg.Name, Detail: x.SA.String()})
	ch.ike.deleteChild(ch, fmt.Sprintf("hard %s lifetime reached", x.Limit))
}

// resync re-reads the SAD and SPD after lost events: a child whose SAs
// are gone is deleted (and the peer told), as a hard expire would have
// done; a missing policy of a live child or trap is put back.
func (e *Engine) resync() {
	have := map[kernelops.SAID]bool{}
	for s, err := range e.sad.SAs(e.ctx) {
		if err != nil {
			e.log.Error("resync: SAD dump failed", "err", err)
			return
		}
		id := s.ID
		id.Src = kernelops.SAID{}.Src // XFRM keys SAs without the source
		have[id] = true
	}
	pols := map[kernelops.PolicyID]bool{}
	for p, err := range e.spd.Policies(e.ctx) {
		if err != nil {
			e.log.Error("resync: SPD dump failed", "err", err)
			return
		}
		pols[p.ID()] = true
	}
	gone, fixed := 0, 0
	for _, sa := range e.sas {
		for _, ch := range append([]*childSA(nil), sa.children...) {
			if ch.state != childInstalled {
				continue
			}
			ids, n := ch.installedSAs()
			for _, id := range ids[:n] {
				id.Src = kernelops.SAID{}.Src
				if !have[id] {
					gone++
					ch.logger().Warn("resync: SA vanished while events were lost; deleting the child", "sa", id.String())
					// Remove what is left locally, then tell the peer.
					sa.deleteChild(ch, "SA vanished (found at resync after lost events)")
					break
				}
			}
		}
	}
	for id, r := range e.policies.all {
		if pols[id] {
			continue
		}
		var p *kernelops.Policy
		if r.n > 0 {
			p = e.policyFor(id)
		} else if r.trap != nil {
			p = r.trap
		}
		if p == nil {
			continue
		}
		if err := e.spd.ReplacePolicy(e.ctx, p); err != nil {
			e.log.Error("resync: restoring policy failed", "policy", id.String(), "err", err)
			continue
		}
		fixed++
	}
	e.log.Info("resync done", "children-deleted", gone, "policies-restored", fixed)
	e.publish(Event{Kind: "dataplane", State: "resynced", Detail: fmt.Sprintf("%d children deleted, %d policies restored", gone, fixed)})
}

// policyFor rebuilds the ipsec policy an installed child holds for id.
func (e *Engine) policyFor(id kernelops.PolicyID) *kernelops.Policy {
	for _, sa := range e.sas {
		for _, ch := range sa.children {
			for _, p := range childPolicies(ch.cfg, ch.mode, ch.reqid, ch.localAddr, ch.remoteAddr, selectors(ch.localTS, ch.remoteTS)) {
				if p.ID() == id {
					return p
				}
			}
		}
	}
	return nil
}
