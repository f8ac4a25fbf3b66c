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
	// Selectors are the negotiated selectors with their protocol and
	// ports (LocalTS and RemoteTS keep only the addresses).
	LocalSelectors, RemoteSelectors []Selector
	// LocalID is our identity on the IKE SA; RemoteID the one the peer
	// authenticated with ("" if the IKE SA is gone).
	LocalID, RemoteID string
	// UDPEncapPort is the peer's port of UDP-encapsulated ESP (NAT
	// traversal; 0: ESP is not encapsulated).
	UDPEncapPort uint16
	// Reason is why the CHILD SA went down (ChildDown).
	Reason string
	// Rekeyed: it went down because a rekey replaced it (ChildDown).
	Rekeyed bool
	// VIPs are our virtual IPs on the IKE SA (vips), PeerVIPs those
	// leased to the peer from a pool.
	VIPs, PeerVIPs []netip.Addr
}

// Selector is one negotiated traffic selector as a hook sees it: its
// address range as prefixes, its IP protocol (0: any) and its port range
// (0-65535: any).
type Selector struct {
	Prefixes         []netip.Prefix
	Proto            uint8
	FromPort, ToPort uint16
}

// HookFilter is an optional interface of Hooks: WantsChild reports
// whether the hooks may act on the CHILD SAs of child configuration name
// at all. The engine makes no call (and wakes no goroutine) for a child
// they do not want. It is called on the engine's loop, so it must answer
// at once without taking a lock the loop's callers hold (read a
// snapshot). A false answer is final for that state change: answer true
// while unsure (a configuration being reloaded).
type HookFilter interface {
	WantsChild(name string) bool
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
	filter  HookFilter // h's, or nil
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
	r.filter, _ = h.(HookFilter)
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
	if r.filter != nil && !r.filter.WantsChild(ch.cfg.Name) {
		return
	}
	info := ChildHookInfo{Child: ch.cfg.Name, IKEID: ch.ikeID(), ChildID: ch.id, ReqID: ch.reqid, Mode: ch.mode,
		Local: ch.localAddr, Remote: ch.remoteAddr, SPIs: ch.eventSPIs(), Reason: reason,
		Rekeyed: !up && (ch.ours != nil && ch.ours.done || ch.theirs != nil)}
	if sa := ch.ike; sa != nil {
		info.Connection = sa.name()
		if id := sa.localID(); id != nil {
			info.LocalID = idText(id)
		}
		if id := sa.rec.peerID; id != nil {
			info.RemoteID = idText(id)
		}
		info.VIPs, info.PeerVIPs = orZero(sa.vips).addrs, sa.leasedAddrs()
	}
	if ch.encap != nil {
		info.UDPEncapPort = ch.encap.DstPort
	}
	for _, t := range ch.localTS {
		info.LocalTS = append(info.LocalTS, t.prefixes()...)
		info.LocalSelectors = append(info.LocalSelectors, Selector{Prefixes: t.prefixes(), Proto: t.proto, FromPort: t.sport, ToPort: t.eport})
	}
	for _, t := range ch.remoteTS {
		info.RemoteTS = append(info.RemoteTS, t.prefixes()...)
		info.RemoteSelectors = append(info.RemoteSelectors, Selector{Prefixes: t.prefixes(), Proto: t.proto, FromPort: t.sport, ToPort: t.eport})
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
