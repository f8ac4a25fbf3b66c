package ike

import (
	"log/slog"
	"net/netip"
	"sync"

	"github.com/keyplane/keyplane/kernelops"
)

// Hooks is told of CHILD SAs coming up and going down, as strongSwan's
// updown script is: to add routes or firewall rules, or tell another
// system. The engine calls it from one goroutine of its own, in the
// order things happened, never on its loop: a slow hook delays the
// hooks after it, not the negotiations. A rekey is one ChildUp (the new
// CHILD SA) and one ChildDown (the old one, Rekeyed set).
type Hooks interface {
	ChildUp(ChildHookInfo)
	ChildDown(ChildHookInfo)
}

// ChildHookInfo is a CHILD SA as a hook sees it.
type ChildHookInfo struct {
	Connection string
	Child      string
	// IKEID and ChildID are the SAs' unique IDs (ids.go).
	IKEID, ChildID uint32
	ReqID          uint32
	Mode           kernelops.Mode
	// Local and Remote are the ESP SAs' endpoints; LocalTS and RemoteTS
	// the negotiated selectors as prefixes (ports and protocol left out).
	Local, Remote     netip.Addr
	LocalTS, RemoteTS []netip.Prefix
	SPIs              SPIs
	// Reason is why the CHILD SA went down (ChildDown).
	Reason string
	// Rekeyed: it went down because a rekey replaced it (ChildDown).
	Rekeyed bool
}

// HookQueue bounds the hook calls waiting for a slow hook; past it, the
// engine drops them and logs how many (the loop never waits for a hook).
const HookQueue = 4096

type hookCall struct {
	up   bool
	info ChildHookInfo
}

// hookRunner calls the hooks off the loop.
type hookRunner struct {
	h       Hooks
	log     *slog.Logger
	q       chan hookCall
	done    sync.WaitGroup
	dropped int // loop-owned
}

func newHookRunner(h Hooks, log *slog.Logger) *hookRunner {
	if h == nil {
		return nil
	}
	r := &hookRunner{h: h, log: log, q: make(chan hookCall, HookQueue)}
	r.done.Go(func() {
		for c := range r.q {
			if c.up {
				r.h.ChildUp(c.info)
			} else {
				r.h.ChildDown(c.info)
			}
		}
	})
	return r
}

// close lets the queued calls run and waits for them (Engine.Close).
func (r *hookRunner) close() {
	if r == nil {
		return
	}
	close(r.q)
	r.done.Wait()
}

// childHook queues the hook of a child's state change from one state to
// another, if it is an up or a down. Runs on the loop.
func (e *Engine) childHook(ch *childSA, from, to childState, reason string) {
	r := e.hooks
	if r == nil {
		return
	}
	var up bool
	switch {
	case to == childInstalled:
		up = true
	case (to == childDeleted || to == childFailed) && (from == childInstalled || from == childDeleting):
	default:
		return
	}
	info := ChildHookInfo{Child: ch.cfg.Name, IKEID: ch.ikeID(), ChildID: ch.id, ReqID: ch.reqid, Mode: ch.mode,
		Local: ch.localAddr, Remote: ch.remoteAddr, SPIs: ch.eventSPIs(), Reason: reason,
		Rekeyed: !up && (ch.ours != nil && ch.ours.done || ch.theirs != nil)}
	if ch.ike != nil {
		info.Connection = ch.ike.name()
	}
	for _, t := range ch.localTS {
		info.LocalTS = append(info.LocalTS, t.prefixes()...)
	}
	for _, t := range ch.remoteTS {
		info.RemoteTS = append(info.RemoteTS, t.prefixes()...)
	}
	select {
	case r.q <- hookCall{up: up, info: info}:
		if r.dropped > 0 {
			e.log.Warn("hooks were too slow: calls dropped", "dropped", r.dropped)
			r.dropped = 0
		}
	default:
		r.dropped++
	}
}
