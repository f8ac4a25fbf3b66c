package ike

import (
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// Liveness (RFC 7296 §2.4): an IKE SA checks that its peer is alive with
// an empty INFORMATIONAL request only when nothing has been heard from the
// peer for a while; traffic on the children counts as hearing from it.
//
// With an IdleWatcher (CapIdle) the dataplane finds the idle SAs in its
// bulk scan: each installed child's inbound SA is watched with the
// connection's dpd_delay, and a check goes out when every watched child of
// the IKE SA has been reported idle and no IKE message came from the peer
// within dpd_delay. The detector reports an SA once per idle period, so
// after a check (or any answered exchange) the IKE SA asks for a fresh
// report dpd_delay later by nudging its children's thresholds: a child
// still idle then is reported again at the next scan, one with traffic
// only when it falls idle again. The engine reads no counters itself.
//
// Without CapIdle the check is sent every dpd_delay, as before.

// dpdKind says what an IKE SA's dpdTimer is armed for.
type dpdKind uint8

const (
	dpdNone     dpdKind = iota
	dpdPeriodic         // timer-driven: send a check when it fires
	dpdRecheck          // idle-driven: ask the detector for fresh reports
)

// idleKey indexes watched children by inbound SA, without the source:
// dataplanes that key SAs by destination, SPI and protocol may report the
// SA without it.
func idleKey(id kernelops.SAID) saKey {
	return saKey{dst: id.Dst, spi: id.SPI, proto: id.Proto, mark: id.Mark}
}

// saKey is an SAID without the source: 40 bytes a map slot instead of
// 64 (Engine.byIn).
type saKey struct {
	dst   netip.Addr
	spi   uint32
	proto kernelops.Proto
	mark  kernelops.Mark
}

// idleThreshold is the child's watch threshold. It alternates by a
// nanosecond between dpd_delay and dpd_delay+1ns: the detector treats a
// changed threshold as permission to report the current idle period again.
func (ch *childSA) idleThreshold() time.Duration {
	d := ch.ike.conn.DPDDelay
	if ch.watchAlt {
		d++
	}
	return d
}

// watchIdle starts watching the child's inbound SA, when liveness is
// idle-driven and the connection wants liveness checks.
func (e *Engine) watchIdle(ch *childSA) {
	if e.idleW == nil || ch.ike == nil || ch.ike.conn == nil || ch.ike.conn.DPDDelay <= 0 || ch.state != childInstalled || ch.watched {
		return
	}
	if err := e.idleW.WatchIdle(e.ctx, ch.inID(), ch.idleThreshold()); err != nil {
		ch.logger().Warn("cannot watch the inbound SA for idleness; the IKE SA falls back to timed liveness checks", "err", err)
		return
	}
	ch.watched = true
	ch.idleAt = 0
	e.byIn[idleKey(ch.inID())] = ch
}

// unwatchIdle stops watching the child's inbound SA.
func (e *Engine) unwatchIdle(ch *childSA) {
	if !ch.watched {
		return
	}
	ch.watched = false
	delete(e.byIn, idleKey(ch.inID()))
	if err := e.idleW.WatchIdle(e.ctx, ch.inID(), 0); err != nil {
		ch.logger().Debug("unwatching the inbound SA", "err", err)
	}
}

// rewatch nudges the child's threshold so the detector may report its
// current idle period again.
func (e *Engine) rewatch(ch *childSA) {
	if !ch.watched {
		return
	}
	ch.watchAlt = !ch.watchAlt
	ch.idleAt = 0
	if err := e.idleW.WatchIdle(e.ctx, ch.inID(), ch.idleThreshold()); err != nil {
		ch.logger().Warn("cannot re-arm idle detection; falling back to timed liveness checks", "err", err)
		ch.watched = false
		delete(e.byIn, idleKey(ch.inID()))
		ch.ike.armLiveness()
	}
}

// idleDriven reports whether the IKE SA's liveness follows idle reports:
// some installed child is watched.
func (sa *ikeSA) idleDriven() bool {
	for _, ch := range sa.children {
		if ch.watched && ch.state == childInstalled {
			return true
		}
	}
	return false
}

// armLiveness (re)arms liveness after the IKE SA or its set of children
// changed: timer-driven SAs get their periodic check, idle-driven ones
// wait for the detector (a pending re-check stays).
func (sa *ikeSA) armLiveness() {
	if sa.state != ikeEstablished || sa.quiet() || sa.conn == nil || sa.conn.DPDDelay <= 0 {
		sa.stopLiveness()
		return
	}
	if sa.idleDriven() {
		if sa.dpdKind == dpdPeriodic {
			sa.stopLiveness()
		}
		return
	}
	if sa.dpdKind != dpdPeriodic {
		sa.scheduleDPD()
	}
}

func (sa *ikeSA) stopLiveness() {
	sa.dpdTimer.Stop()
	sa.dpdTimer, sa.dpdKind = nil, dpdNone
}

// scheduleDPD arms the timer-driven liveness check.
func (sa *ikeSA) scheduleDPD() {
	sa.dpdTimer.Stop()
	sa.dpdKind = dpdPeriodic
	sa.dpdTimer = sa.e.after(sa.conn.DPDDelay, func() {
		sa.dpdTimer, sa.dpdKind = nil, dpdNone
		if sa.state != ikeEstablished || sa.quiet() {
			return
		}
		if sa.w.inflight == nil {
			sa.sendLiveness()
		}
		sa.armLiveness()
	})
}

// sendLiveness sends an empty INFORMATIONAL request.
func (sa *ikeSA) sendLiveness() {
	sa.logger().Debug("sending a liveness check")
	sa.send(&request{exch: message.INFORMATIONAL})
}

// recheckIn asks, d from now, for fresh idle reports of the children.
func (sa *ikeSA) recheckIn(d time.Duration) {
	sa.dpdTimer.Stop()
	sa.dpdKind = dpdRecheck
	sa.dpdTimer = sa.e.after(max(d, 0), func() {
		sa.dpdTimer, sa.dpdKind = nil, dpdNone
		if sa.state != ikeEstablished || sa.quiet() {
			return
		}
		sa.idleSeen = false
		for _, ch := range sa.children {
			if ch.state == childInstalled {
				sa.e.rewatch(ch)
			}
		}
	})
}

// exchangeDone runs after any of our requests was answered: the peer is
// alive now, so an idle-driven SA whose idle reports were used up asks
// for fresh ones dpd_delay later.
func (sa *ikeSA) exchangeDone() {
	if sa.idleSeen && sa.state == ikeEstablished && !sa.quiet() && sa.conn != nil && sa.conn.DPDDelay > 0 && sa.idleDriven() {
		sa.recheckIn(sa.conn.DPDDelay)
	}
}

// idleEvent: a watched inbound SA has been idle for dpd_delay.
func (e *Engine) idleEvent(x *kernelops.IdleEvent) {
	ch := e.byIn[idleKey(x.SA)]
	if ch == nil || !ch.watched || ch.state != childInstalled {
		e.log.Debug("idle report for an SA we do not watch", "sa", x.SA.String())
		return
	}
	ch.logger().Debug("inbound SA idle", "idle-for", x.IdleFor.String())
	ch.idleAt = e.nowStamp()
	ch.ike.idleCheck()
}

// idleSpread is how far apart the idle reports of an IKE SA's children
// may lie and still count as one observation (reports of one scan arrive
// together; older ones may be stale, since traffic that resumes raises no
// event).
func idleSpread(dpd time.Duration) time.Duration { return min(dpd/4, time.Second) }

// idleCheck sends a liveness check if every watched child is idle and the
// peer has been silent for dpd_delay.
func (sa *ikeSA) idleCheck() {
	if sa.state != ikeEstablished || sa.quiet() || sa.conn == nil || sa.conn.DPDDelay <= 0 {
		return
	}
	var oldest, newest time.Time
	n := 0
	for _, ch := range sa.children {
		if !ch.watched || ch.state != childInstalled {
			continue
		}
		if ch.idleAt == 0 {
			return // wait for the others
		}
		at := sa.e.timeOf(ch.idleAt)
		if n == 0 || at.Before(oldest) {
			oldest = at
		}
		if n == 0 || at.After(newest) {
			newest = at
		}
		n++
	}
	if n == 0 {
		return
	}
	dpd := sa.conn.DPDDelay
	if newest.Sub(oldest) > idleSpread(dpd) {
		// Some report may be stale: ask for all of them afresh.
		for _, ch := range sa.children {
			if ch.state == childInstalled {
				sa.e.rewatch(ch)
			}
		}
		return
	}
	for _, ch := range sa.children {
		ch.idleAt = 0
	}
	sa.idleSeen = true
	now := sa.e.clk.Now()
	switch {
	case sa.lastHeard != 0 && now.Sub(sa.e.timeOf(sa.lastHeard)) < dpd:
		// The peer spoke recently (its own check, a rekey): that is proof enough.
		sa.recheckIn(sa.e.timeOf(sa.lastHeard).Add(dpd).Sub(now))
	case sa.w.inflight != nil:
		// An exchange is out: its answer proves liveness, its loss ends the SA.
		sa.recheckIn(dpd)
	default:
		sa.sendLiveness()
	}
}

// livenessReconfigured applies a changed dpd_delay: children are watched
// with the new threshold (or no longer), timers rearmed.
func (sa *ikeSA) livenessReconfigured() {
	sa.stopLiveness()
	for _, ch := range sa.children {
		sa.e.unwatchIdle(ch)
		sa.e.watchIdle(ch)
	}
	sa.armLiveness()
}

// resyncLiveness follows lost dataplane events: idle reports may be among
// them (the detector will not repeat them), and link or address changes.
func (e *Engine) resyncLiveness() {
	for _, sa := range e.sas {
		for _, ch := range sa.children {
			if ch.state == childInstalled {
				e.rewatch(ch)
			}
		}
	}
	if e.addrSel != nil && e.loadInterfaces() {
		if down, revive := e.relink(); down+revive > 0 {
			e.log.Info("links re-read after lost events", "ike-sas-suspended", down, "ike-sas-to-revive", revive)
		}
	}
}
