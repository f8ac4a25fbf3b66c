package ike

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// Link awareness: an IKE SA whose local address sits on a link that goes
// down, or whose address goes away, is suspended. It starts nothing —
// no liveness check, retransmission, rekey or delete — and none of its
// give-up timers run, so a dead link carrying thousands of SAs costs no
// packet and kills no SA. (A request from the peer that does arrive is
// still answered: one answer per request, and proof the path works.) A child whose hard lifetime runs out meanwhile
// still leaves the dataplane; the delete notification for the peer is
// held (bounded in number and age). When the link or address returns the
// SAs are revived through one token bucket: one packet each (the request
// that was in flight, else the first held one, else a liveness check),
// ReviveBurst at once and ReviveRate per second after, then their timers
// resume. One log line and one engine event per transition, with the
// number of SAs affected.
//
// The table of interfaces comes from AddrSelector.Interfaces and follows
// the dataplane's link and address events (CapChangeEvents). An SA's link
// is the interface that carries its local address; an address on no
// known interface (a wildcard, or a model that does not know the host's
// addresses) leaves the SA unmanaged.

// linkState is an IKE SA's standing with its link.
type linkState uint8

const (
	linkOK       linkState = iota
	linkDown               // link or address gone: suspended
	linkReviving           // back, waiting for its turn in the revival
)

type ifState struct {
	name  string
	up    bool
	addrs map[netip.Addr]bool
}

// quiet reports whether the SA must not send: its link is down or its
// revival has not come yet.
func (sa *ikeSA) quiet() bool { return sa.link != linkOK }

// loadInterfaces reads the dataplane's interfaces. On failure link
// awareness is off until a later load succeeds.
func (e *Engine) loadInterfaces() bool {
	if e.addrSel == nil {
		return false
	}
	list, err := e.addrSel.Interfaces(e.ctx)
	if err != nil {
		e.log.Warn("cannot list interfaces: link awareness off until the next link or address event", "err", err)
		e.ifs = nil
		return false
	}
	ifs := make(map[int]*ifState, len(list))
	for _, i := range list {
		st := &ifState{name: i.Name, up: i.Up, addrs: map[netip.Addr]bool{}}
		for _, p := range i.Addrs {
			st.addrs[p.Addr().Unmap().WithZone("")] = true
		}
		ifs[i.Index] = st
	}
	e.ifs = ifs
	return true
}

// linkEvent follows a link's state.
func (e *Engine) linkEvent(x *kernelops.LinkEvent) {
	if e.ifs == nil && !e.loadInterfaces() {
		return
	}
	i := e.ifs[x.IfIndex]
	state := "down"
	switch {
	case x.Deleted:
		state = "deleted"
		if i == nil {
			return
		}
		delete(e.ifs, x.IfIndex)
	case i == nil:
		// New to us: take its addresses from the dataplane.
		if !e.loadInterfaces() {
			return
		}
		if e.ifs[x.IfIndex] == nil {
			e.ifs[x.IfIndex] = &ifState{name: x.IfName, up: x.Up, addrs: map[netip.Addr]bool{}}
		}
		if x.Up {
			state = "up"
		}
	default:
		if i.up == x.Up {
			return // another attribute changed
		}
		i.up, i.name = x.Up, x.IfName
		if x.Up {
			state = "up"
		}
	}
	down, revive := e.relink()
	e.log.Info("link "+state, "link", x.IfName, "index", x.IfIndex, "ike-sas-suspended", down, "ike-sas-to-revive", revive)
	e.publish(Event{Kind: "link", Name: x.IfName, State: state,
		Detail: fmt.Sprintf("%d IKE SAs suspended, %d to revive", down, revive)})
}

// addrEvent follows an interface's addresses.
func (e *Engine) addrEvent(x *kernelops.AddrEvent) {
	if e.ifs == nil && !e.loadInterfaces() {
		return
	}
	a := x.Prefix.Addr().Unmap().WithZone("")
	i := e.ifs[x.IfIndex]
	if i == nil {
		if !e.loadInterfaces() {
			return
		}
	} else if x.Added {
		i.addrs[a] = true
	} else {
		delete(i.addrs, a)
	}
	down, revive := e.relink()
	state := "removed"
	if x.Added {
		state = "added"
	}
	lvl := slog.LevelDebug
	if down+revive > 0 {
		lvl = slog.LevelInfo
	}
	e.log.Log(e.ctx, lvl, "address "+state, "addr", a, "link", x.IfName, "ike-sas-suspended", down, "ike-sas-to-revive", revive)
	e.publish(Event{Kind: "addr", Name: a.String(), State: state,
		Detail: fmt.Sprintf("on %s: %d IKE SAs suspended, %d to revive", x.IfName, down, revive)})
}

// addrIndex maps each known address to whether some up interface has it,
// and to an interface that has it (an up one if any).
type addrSite struct {
	up    bool
	index int
}

func (e *Engine) addrIndex() map[netip.Addr]addrSite {
	idx := map[netip.Addr]addrSite{}
	for n, i := range e.ifs {
		for a := range i.addrs {
			s, ok := idx[a]
			if !ok || (!s.up && i.up) {
				idx[a] = addrSite{up: i.up, index: n}
			}
		}
	}
	return idx
}

// usable reports whether the SA can send: its local address is on an up
// interface, or on none we have ever seen it on.
func (sa *ikeSA) usable(idx map[netip.Addr]addrSite) bool {
	a := sa.local.Addr().Unmap().WithZone("")
	if !a.IsValid() || a.IsUnspecified() {
		return true
	}
	if s, ok := idx[a]; ok {
		sa.ifIndex = int32(s.index) // a Linux ifindex is an int32
		return s.up
	}
	return sa.ifIndex == 0
}

// relink re-reads every SA's link after a change; it returns how many SAs
// it suspended and how many it queued for revival.
func (e *Engine) relink() (down, revive int) {
	if e.ifs == nil {
		return 0, 0
	}
	idx, memo := e.addrIndex(), routeMemo{}
	for _, sa := range e.sas {
		switch d, r := e.relinkOne(sa, idx, memo); {
		case d:
			down++
		case r:
			revive++
		}
	}
	if revive > 0 {
		e.pump()
	}
	return down, revive
}

// relinkOne applies the SA's current link state (memo: mobikeMove's).
func (e *Engine) relinkOne(sa *ikeSA, idx map[netip.Addr]addrSite, memo routeMemo) (down, revive bool) {
	if sa.state == ikeDead {
		return false, false
	}
	ok := sa.usable(idx)
	if !ok && sa.mobikeMove(idx, memo) { // MOBIKE: moved to another address instead
		return false, false
	}
	switch {
	case !ok && sa.link == linkOK:
		sa.suspend()
		e.awaitMove(sa)
		return true, false
	case !ok && sa.link == linkReviving:
		sa.link = linkDown // leaves the revival queue when its turn comes
		e.awaitMove(sa)
		return true, false
	case ok && sa.link == linkDown:
		sa.link = linkReviving
		if !sa.reviveQueued {
			sa.reviveQueued = true
			e.reviveQ = append(e.reviveQ, sa)
			if e.reviveStart.IsZero() {
				e.reviveStart = e.clk.Now()
			}
		}
		return false, true
	}
	return false, false
}

// awaitMove keeps a suspended SA that MOBIKE could move for the next
// route change. The kernel reports an address's removal before it drops
// the routes that used it as source, so at the address event the route
// to the peer may still name the old address; when that route goes, the
// route change is the SA's cue to move.
func (e *Engine) awaitMove(sa *ikeSA) {
	if !sa.mob.active || !sa.mob.mover {
		return
	}
	if e.moveWait == nil {
		e.moveWait = map[*ikeSA]struct{}{}
	}
	e.moveWait[sa] = struct{}{}
}

// routesChanged tries again to move the suspended MOBIKE SAs (one call
// for a burst of route events: kernel_events.go).
func (e *Engine) routesChanged() {
	e.routePending.Store(false)
	if len(e.moveWait) == 0 || e.ifs == nil {
		return
	}
	idx, memo := e.addrIndex(), routeMemo{}
	moved := 0
	for sa := range e.moveWait { // revive and removeSA take SAs out
		if sa.link == linkDown && sa.mobikeMove(idx, memo) { // a reviving one waits its turn
			moved++
		}
	}
	if moved > 0 {
		e.log.Info("routes changed", "ike-sas-moved", moved, "ike-sas-suspended", len(e.moveWait))
	}
}

// placeSA applies the link state to a new SA or one whose local address
// changed; a revival it needs is started at once (pump).
func (e *Engine) placeSA(sa *ikeSA) {
	if e.ifs == nil {
		return
	}
	if _, r := e.relinkOne(sa, e.addrIndex(), nil); r {
		e.pump()
	}
}

// suspend silences the SA: the request in flight stays but is not
// retransmitted, and no liveness timer runs.
func (sa *ikeSA) suspend() {
	sa.link = linkDown
	sa.w.pause()
	sa.stopLiveness()
	sa.armDownTimeout() // recovery.go
}

// revive lets the SA send again, with exactly one packet now.
func (sa *ikeSA) revive() {
	sa.link = linkOK
	delete(sa.e.moveWait, sa)
	sa.rec.downTimer.Stop()
	sa.dropStaleHeld()
	if sa.state == ikeDead {
		return
	}
	for _, ch := range sa.children {
		ch.idleAt = 0
	}
	// Idle reports that came while suspended were not acted on, and the
	// detector does not repeat them: ask afresh once the peer answers.
	sa.idleSeen = true
	switch {
	case sa.w.resume():
		// The exchange in flight when the link died went again, with all
		// its retransmissions ahead of it.
	case len(sa.w.queue) > 0:
		sa.next()
	case sa.state == ikeEstablished:
		sa.sendLiveness()
	}
	// Rekeys that fell due while the link was down queue behind it.
	for _, ch := range sa.children {
		if ch.rekey && ch.state == childInstalled && ch.ours == nil {
			sa.e.scheduleRekey(ch)
		}
	}
	sa.armLiveness()
}

// hold keeps a request the SA may not send now, bounded by
// down_queue_limit: past it the oldest held request is dropped.
func (sa *ikeSA) hold(r *request) {
	r.held = sa.e.clk.Now()
	sa.w.queue = append(sa.w.queue, r)
	limit := sa.e.cfg.Daemon.DownQueueLimit
	n := 0
	for _, q := range sa.w.queue {
		if !q.held.IsZero() {
			n++
		}
	}
	for i := 0; n > limit && i < len(sa.w.queue); {
		q := sa.w.queue[i]
		if q.held.IsZero() {
			i++
			continue
		}
		sa.w.queue = append(sa.w.queue[:i:i], sa.w.queue[i+1:]...)
		n--
		sa.dropHeld(q, fmt.Sprintf("more than %d requests held while the link is down", limit))
	}
}

// dropStaleHeld drops held requests older than down_queue_max_age.
func (sa *ikeSA) dropStaleHeld() {
	maxAge := sa.e.cfg.Daemon.DownQueueMaxAge
	now := sa.e.clk.Now()
	keep := sa.w.queue[:0:0]
	for _, q := range sa.w.queue {
		if !q.held.IsZero() && now.Sub(q.held) > maxAge {
			sa.dropHeld(q, fmt.Sprintf("held longer than %s while the link was down", maxAge))
			continue
		}
		keep = append(keep, q)
	}
	sa.w.queue = keep
}

// dropHeld gives up a held request: its onDrop says what that means; a
// handshake that cannot go ahead ends the SA.
func (sa *ikeSA) dropHeld(r *request, why string) {
	sa.logger().Info("dropping a request held for the peer", "exchange", r.exch, "reason", why)
	switch {
	case r.onDrop != nil:
		r.onDrop(why)
	case sa.state != ikeEstablished && sa.state != ikeDeleting:
		sa.destroyErr(fmt.Errorf("%w: %s", ErrLinkDown, why))
	}
}

// pump revives queued SAs as the token bucket allows and arms itself for
// the rest.
func (e *Engine) pump() {
	d := e.cfg.Daemon
	rate, burst := d.ReviveRate, float64(d.ReviveBurst)
	if rate <= 0 {
		rate = config.DefaultReviveRate
	}
	if burst < 1 {
		burst = config.DefaultReviveBurst
	}
	now := e.clk.Now()
	// Settings may change on reload: the bucket follows them.
	e.revive.rate, e.revive.burst = rate, burst
	e.revive.refill(now)
	for len(e.reviveQ) > 0 {
		sa := e.reviveQ[0]
		live := sa.link == linkReviving && sa.state != ikeDead
		if live && e.revive.tokens < 1 {
			break
		}
		e.reviveQ = e.reviveQ[1:]
		sa.reviveQueued = false
		if live {
			e.revive.tokens--
			e.revived++
			sa.revive()
		}
	}
	if len(e.reviveQ) == 0 {
		e.reviveQ = nil
		e.reviveTimer.Stop()
		e.reviveTimer = nil
		if e.revived > 0 {
			took := now.Sub(e.reviveStart)
			e.log.Info("revival done", "ike-sas", e.revived, "took", took.String())
			e.publish(Event{Kind: "link", State: "revived", Detail: fmt.Sprintf("%d IKE SAs in %s", e.revived, took)})
		}
		e.revived, e.reviveStart = 0, time.Time{}
		return
	}
	if e.reviveTimer == nil {
		wait := e.revive.wait()
		e.reviveTimer = e.after(max(wait, time.Millisecond), func() {
			e.reviveTimer = nil
			e.pump()
		})
	}
}

// deleteHeld removes the child now and holds the peer's notification.
func (sa *ikeSA) deleteHeld(ch *childSA, reason string) {
	ch.remove(reason)
	sa.dropChild(ch)
	sa.armLiveness()
	sa.logger().Debug("link down: child removed, its delete notification held", "child", ch.cfg.Name)
	sa.hold(&request{exch: message.INFORMATIONAL,
		payloads:  []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{ch.inSPI}}},
		onTimeout: func() { sa.destroyErr(errPeerGone("peer not responding to our child delete")) },
		onDrop:    func(string) {}}) // the child is gone here; the peer's lifetime or checks end its half
}
