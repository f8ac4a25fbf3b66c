package ike

import "time"

// NAT-T keepalives (RFC 3948 §4): an IKE SA behind a NAT (natLocal: the
// peer saw our packets come from another address or port) keeps its NAT
// mapping alive by sending one 0xff octet from its NAT-T socket to the
// peer's NAT-T port whenever it has sent the peer nothing for keep_alive
// (strongswan.conf's charon.keep_alive, 20 s by default; a daemon
// setting here too). The side that is not behind a NAT never sends them.
// Any IKE message we send refreshes the mapping too and postpones the
// next keepalive; ESP does not count, since keyplane reads no per-SA
// counters for it. The dataplane's NAT-T socket sends the octet without
// the non-ESP marker (kernelops.IKEListen), and the receiving end's
// consumes it.

// natKeepalive is the NAT-keepalive datagram.
var natKeepalive = []byte{0xff}

// keepaliveWait says whether a keepalive is due now, given when we last
// sent the peer anything, and how long until the next check.
func keepaliveWait(lastSent, now time.Time, interval time.Duration) (send bool, next time.Duration) {
	idle := now.Sub(lastSent)
	if lastSent.IsZero() || idle >= interval {
		return true, interval
	}
	return false, interval - idle
}

// armKeepalive (re)schedules the SA's keepalives: only behind a NAT,
// established, with keep_alive set.
func (sa *ikeSA) armKeepalive() {
	sa.rec.keepaliveTimer.Stop()
	sa.rec.keepaliveTimer = nil
	d := sa.e.cfg.Daemon.KeepAlive
	if d <= 0 || !sa.natLocal || sa.state != ikeEstablished {
		return
	}
	next := d
	if sa.rec.lastSent != 0 {
		_, next = keepaliveWait(sa.e.timeOf(sa.rec.lastSent), sa.e.clk.Now(), d)
	}
	sa.rec.keepaliveTimer = sa.e.after(next, sa.keepaliveDue)
}

// keepaliveDue is the keepalive timer.
func (sa *ikeSA) keepaliveDue() {
	sa.rec.keepaliveTimer = nil
	d := sa.e.cfg.Daemon.KeepAlive
	if d <= 0 || sa.state != ikeEstablished {
		return
	}
	now := sa.e.clk.Now()
	send, next := keepaliveWait(sa.e.timeOf(sa.rec.lastSent), now, d)
	if send && !sa.quiet() && sa.sock != nil && sa.sock.nat {
		sa.logger().Debug("sending a NAT keepalive", "to", sa.remote)
		sa.e.sendTo(sa.sock, sa.local, sa.remote, natKeepalive)
		sa.rec.lastSent = sa.e.stampOf(now)
		sa.e.keepalivesSent++
	}
	sa.rec.keepaliveTimer = sa.e.after(next, sa.keepaliveDue)
}

// keepaliveReconfigured applies a changed keep_alive to every IKE SA.
func (e *Engine) keepaliveReconfigured() {
	for _, sa := range e.sas {
		sa.armKeepalive()
	}
}
