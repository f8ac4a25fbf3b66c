package ike

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// CREATE_CHILD_SA for children (RFC 7296 §1.3.1, §1.3.3): an additional
// child, or the replacement of one (REKEY_SA), in both roles. PFS as
// configured: a key exchange when an ESP proposal names one, retried once
// with the group the peer asks for (INVALID_KE_PAYLOAD); a peer's
// TEMPORARY_FAILURE is retried after a wait (§2.25); collisions of two
// rekeys of one child are settled in collision.go.

// tempFailureWait is the least wait before trying again an exchange the
// peer answered TEMPORARY_FAILURE (RFC 7296 §2.25: it MUST wait); up to
// twice as much again is added at random. (A variable for tests.)
var tempFailureWait = 5 * time.Second

// tempFailureTries bounds the attempts of one child create or rekey that
// keeps getting TEMPORARY_FAILURE.
const tempFailureTries = 5

// childExchange is our CREATE_CHILD_SA for nc: a new child, or (old set)
// old's replacement.
type childExchange struct {
	nc, old   *childSA
	group     message.DHGroup // the key exchange to send; 0: no PFS
	keRetried bool            // the one INVALID_KE_PAYLOAD retry is used
	attempts  int             // TEMPORARY_FAILURE answers so far
}

// scheduleRekey rekeys the child now, on the IKE SA that holds it (an
// IKE rekey may have moved it). The randomness that keeps both ends from
// rekeying together is in its soft lifetime (lifetime.go).
func (e *Engine) scheduleRekey(ch *childSA) { ch.ike.rekeyChild(ch) }

// createChild negotiates an additional child on an established IKE SA
// (CREATE_CHILD_SA without REKEY_SA).
func (sa *ikeSA) createChild(ch *childSA) {
	if sa.deferIKE(func(n *ikeSA) { n.createChild(ch) }) {
		return
	}
	ch.ike = sa
	ch.localAddr, ch.remoteAddr = sa.local.Addr(), sa.remote.Addr()
	ch.localTS = sa.localRanges(ch.cfg, ch.localAddr) // vips.go
	ch.remoteTS = configRanges(ch.cfg.RemoteTS, ch.remoteAddr)
	if a := ch.acquired(); a != nil && a.Packet.Src.IsValid() && a.Packet.Dst.IsValid() {
		ch.localTS = append([]tsRange{hostRange(a.Packet.Src.Addr(), a.Packet.Proto, a.Packet.SrcPort)}, ch.localTS...)
		ch.remoteTS = append([]tsRange{hostRange(a.Packet.Dst.Addr(), a.Packet.Proto, a.Packet.DstPort)}, ch.remoteTS...)
	}
	sa.negotiateChild(&childExchange{nc: ch, group: pfsGroup(ch.cfg.ESPProposals, 0)})
}

// rekeyChild replaces an installed child by a new one with fresh keys
// (CREATE_CHILD_SA with REKEY_SA, RFC 7296 §2.8), then deletes the old.
func (sa *ikeSA) rekeyChild(old *childSA) {
	if old.state != childInstalled || old.ours != nil || old.theirs != nil || sa.state != ikeEstablished {
		return
	}
	if sa.deferIKE(func(n *ikeSA) { n.rekeyChild(old) }) {
		return
	}
	if sa.quiet() {
		// Never into a dead link: the revival starts it (old.rekey).
		old.rekey = true
		sa.e.childChanged(old) // changes.go
		old.logger().Debug("link down: rekey deferred until the link returns")
		return
	}
	// The new SAs take the IKE SA's addresses, which differ from old's
	// after a MOBIKE move or NAT change the dataplane could not migrate.
	nc := &childSA{e: sa.e, id: sa.e.newChildID(), cfg: old.cfg, ike: sa, state: childNegotiating, reqid: old.reqid, keepReqID: true, mode: old.mode,
		localAddr: sa.local.Addr(), remoteAddr: sa.remote.Addr(), localTS: old.localTS, remoteTS: old.remoteTS}
	// The group the child has is the one the peer is known to take.
	x := &childExchange{nc: nc, old: old, group: pfsGroup(old.cfg.ESPProposals, old.suite.DH)}
	old.logger().Info("rekeying child", "pfs", x.group.String())
	sa.e.publish(Event{Kind: "child", Name: old.cfg.Name, State: "rekeying", ChildID: old.id, IKEID: sa.id, SPIs: old.eventSPIs()})
	sa.negotiateChild(x)
}

// negotiateChild sends the CREATE_CHILD_SA request of x.
func (sa *ikeSA) negotiateChild(x *childExchange) {
	nc, old := x.nc, x.old
	nc.initiator = true
	if nc.inSPI == 0 {
		if err := sa.e.allocSPI(nc); err != nil {
			sa.childExchangeFailed(x, fmt.Errorf("cannot allocate an SPI: %w", err))
			return
		}
	}
	ni := sa.e.newNonce(true)
	var dh ikecrypto.KeyExchange
	if x.group != 0 {
		var err error
		if dh, err = ikecrypto.NewKeyExchange(x.group); err != nil {
			sa.childExchangeFailed(x, err)
			return
		}
	}
	var ps []message.Payload
	if old != nil {
		old.ours = &childRekey{nc: nc, ni: ni}
		ps = append(ps, &message.Notify{Protocol: message.ProtocolESP, SPI: spiBytes(old.inSPI), NotifyType: message.REKEY_SA})
	}
	if nc.mode == kernelops.ModeTransport {
		ps = append(ps, &message.Notify{NotifyType: message.USE_TRANSPORT_MODE})
	}
	ps = append(ps, espProposals(nc.cfg.ESPProposals, nc.inSPI, true), &message.Nonce{Data: ni})
	if dh != nil {
		ps = append(ps, &message.KE{Group: dh.Method(), Data: dh.PublicValue()})
	}
	ps = append(ps, messageTS(nc.localTS, false), messageTS(nc.remoteTS, true))
	sa.addChild(nc) // listed while negotiating
	sa.send(&request{exch: message.CREATE_CHILD_SA, payloads: ps, kex: dh,
		onResponse: func(m *message.Message) { sa.childAnswered(x, m, ni, dh) },
		onTimeout:  func() { sa.destroyErr(errPeerGone("peer not responding to CREATE_CHILD_SA")) },
		onDrop: func(why string) {
			sa.childExchangeFailed(x, fmt.Errorf("link down: %s", why))
		}})
}

// childAnswered handles the answer to our CREATE_CHILD_SA.
func (sa *ikeSA) childAnswered(x *childExchange, m *message.Message, ni []byte, dh ikecrypto.KeyExchange) {
	nc, old := x.nc, x.old
	sa.dropChild(nc)
	if sa.childFollowups(x, m, ni, dh) {
		return
	}
	nonce, _ := m.Find(message.PayloadNonce).(*message.Nonce)
	var err error
	if nonce == nil && m.Find(message.PayloadSA) != nil {
		err = ourNotify(message.INVALID_SYNTAX, "CREATE_CHILD_SA answer without a nonce")
	} else {
		var nr []byte
		if nonce != nil {
			nr = nonce.Data
		}
		if err = sa.completeChild(nc, m, ni, nr, dh, true); err == nil {
			if old != nil {
				old.ours.nr, old.ours.done = append([]byte(nil), nr...), true
				sa.settleChildRekey(old)
			}
			sa.e.handshakeDone(sa)
			nc.notify(nil)
			return
		}
	}
	var ne *NotifyError
	if errors.As(err, &ne) && ne.FromPeer {
		switch ne.Type {
		case message.INVALID_KE_PAYLOAD:
			if g, ok := askedGroup(m); ok && !x.keRetried && g != x.group && offersGroup(nc.cfg.ESPProposals, g) {
				sa.logger().Info("peer asks for another key exchange method for the child (INVALID_KE_PAYLOAD); retrying",
					"child", nc.cfg.Name, "group", g.String())
				x.keRetried, x.group = true, g
				sa.addChild(nc)
				sa.resend(x)
				return
			}
		case message.TEMPORARY_FAILURE:
			if sa.retryLater(x) {
				return
			}
		case message.CHILD_SA_NOT_FOUND:
			if old != nil && old.theirs == nil && old.state == childInstalled {
				// RFC 7296 §2.25: the peer has no such child. Ours goes
				// silently and a new one is created from scratch.
				sa.childExchangeFailed(x, err)
				old.logger().Warn("peer does not know the child it was asked to rekey (CHILD_SA_NOT_FOUND): replacing it by a new one")
				old.remove("the peer does not know it (CHILD_SA_NOT_FOUND)")
				sa.dropChild(old)
				sa.createChild(&childSA{e: sa.e, id: sa.e.newChildID(), cfg: old.cfg, state: childNegotiating, reqid: old.reqid, mode: old.mode})
				return
			}
		}
	}
	sa.childExchangeFailed(x, err)
}

// askedGroup is the group an INVALID_KE_PAYLOAD notify asks for.
func askedGroup(m *message.Message) (message.DHGroup, bool) {
	n := m.Notify(message.INVALID_KE_PAYLOAD)
	if n == nil || len(n.Data) != 2 {
		return 0, false
	}
	return message.DHGroup(uint16(n.Data[0])<<8 | uint16(n.Data[1])), true
}

// retryLater sends x again after a wait, unless retryMoot says not to.
// It reports whether it will.
func (sa *ikeSA) retryLater(x *childExchange) bool {
	x.attempts++
	if retryMoot(x) {
		return false
	}
	wait := tempFailureWait + randUpTo(2*tempFailureWait)
	sa.logger().Info("peer answered TEMPORARY_FAILURE; trying again later", "child", x.nc.cfg.Name, "rekey", x.old != nil,
		"retry-in", wait.String())
	sa.addChild(x.nc) // still negotiating meanwhile; old.ours stays, so no
	// second rekey of old starts while this one waits
	sa.e.after(wait, func() {
		holder := x.nc.ike
		if x.old != nil {
			holder = x.old.ike
		}
		holder.resend(x)
	})
	return true
}

// retryMoot reports whether a child exchange answered TEMPORARY_FAILURE
// is not to be tried again: it was tried tempFailureTries times, or (a
// rekey) the child it rekeys is no longer installed — the peer replaced
// it (old.theirs) or deleted it. Waiting for the retry would keep the new
// child's inbound SA (larval) in the dataplane until then.
func retryMoot(x *childExchange) bool {
	if x.attempts >= tempFailureTries {
		return true
	}
	return x.old != nil && (x.old.theirs != nil || x.old.state != childInstalled)
}

// resend sends x again, on sa (the SA that holds its child now) or,
// while sa's own rekey is out, on the SA that survives it; unless the
// exchange became moot meanwhile.
func (sa *ikeSA) resend(x *childExchange) {
	if x.nc.state != childNegotiating {
		return // failed meanwhile (its IKE SA went)
	}
	if old := x.old; old != nil && (old.state != childInstalled || old.ours == nil || old.ours.nc != x.nc || old.theirs != nil) {
		sa.childExchangeFailed(x, errors.New("the child was replaced or deleted meanwhile"))
		return
	}
	if sa.state != ikeEstablished {
		sa.childExchangeFailed(x, fmt.Errorf("IKE SA %s", sa.state))
		return
	}
	if sa.deferIKE(func(n *ikeSA) { n.resend(x) }) {
		return
	}
	x.nc.ike.dropChild(x.nc)
	x.nc.ike = sa
	sa.negotiateChild(x)
}

// childExchangeFailed ends x unsuccessfully: the new child fails; a
// replaced child stays as it is (settled by the peer's rekey if there
// was one, else rekeyed again at its next soft expire or removed at its
// hard one).
func (sa *ikeSA) childExchangeFailed(x *childExchange, why error) {
	x.nc.ike.dropChild(x.nc)
	x.nc.fail(why)
	if old := x.old; old != nil && old.ours != nil && old.ours.nc == x.nc {
		old.ours = nil
		if old.theirs != nil {
			old.logger().Info("our rekey failed; the peer's replaces the child", "reason", why.Error())
		} else if old.state == childInstalled {
			old.logger().Warn("child rekey failed; the child stays until its hard lifetime or the next soft expire", "reason", why.Error())
		}
	}
}

// handleCreateChild answers CREATE_CHILD_SA: a rekey of the IKE SA (an
// IKE proposal, rekey_ike.go), a child rekey (REKEY_SA) or a new child.
func (sa *ikeSA) handleCreateChild(m *message.Message, s *sock, local, remote netip.AddrPort) {
	answer := func(ps ...message.Payload) { sa.respond(m, ps, s, local, remote) }
	if sa.followupBusy() {
		sa.logger().Info("CREATE_CHILD_SA while additional key exchanges (IKE_FOLLOWUP_KE) are in progress: answering TEMPORARY_FAILURE")
		answer(&message.Notify{NotifyType: message.TEMPORARY_FAILURE})
		return
	}
	if sap, _ := m.Find(message.PayloadSA).(*message.SA); sap != nil && len(sap.Proposals) > 0 && sap.Proposals[0].Protocol == message.ProtocolIKE {
		sa.handleIKERekey(m, sap, answer)
		return
	}
	if sa.rekeyIKEOut != nil {
		// RFC 7296 §2.25.2: no child is created or rekeyed while we rekey
		// the IKE SA.
		sa.logger().Info("peer creates or rekeys a child while our IKE SA rekey is out: answering TEMPORARY_FAILURE")
		answer(&message.Notify{NotifyType: message.TEMPORARY_FAILURE})
		return
	}
	var old *childSA
	for n := range m.Notifies() {
		if n.NotifyType != message.REKEY_SA || n.Protocol != message.ProtocolESP {
			continue
		}
		old = sa.childByOutSPI(spiFrom(n.SPI))
		switch {
		case old == nil || (old.state != childInstalled && old.state != childDeleting):
			sa.logger().Info("peer rekeys a child we do not have", "spi", fmt.Sprintf("%x", n.SPI))
			answer(&message.Notify{Protocol: message.ProtocolESP, SPI: n.SPI, NotifyType: message.CHILD_SA_NOT_FOUND})
			return
		case old.ours != nil && hasAddKE(old.cfg.ESPProposals):
			// Simultaneous rekeys with additional key exchanges are
			// settled by retrying, not by the nonces (followup.go).
			old.logger().Info("peer rekeys the child while our rekey (with additional key exchanges) is out: answering TEMPORARY_FAILURE")
			answer(&message.Notify{NotifyType: message.TEMPORARY_FAILURE})
			return
		case old.state == childDeleting || old.theirs != nil || (old.ours != nil && old.ours.done):
			// RFC 7296 §2.25.1: it is being deleted (or already replaced).
			old.logger().Info("peer rekeys a child we are deleting or have replaced: answering TEMPORARY_FAILURE")
			answer(&message.Notify{NotifyType: message.TEMPORARY_FAILURE})
			return
		}
	}
	nonce, _ := m.Find(message.PayloadNonce).(*message.Nonce)
	if nonce == nil {
		answer(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	nr := sa.e.newNonce(false)
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	children := sa.conn.Children
	if old != nil {
		children = children[:0:0]
		children = append(children, old.cfg)
		if old.rekeying() {
			old.logger().Info("peer rekeys the child while our rekey of it is out: a collision, settled by the nonces (RFC 7296 §2.8.1)")
		} else {
			old.logger().Info("peer rekeys the child")
		}
	}
	ps, nc := sa.acceptChild(m, children, nonce.Data, nr, ke, old)
	if nc != nil && old != nil {
		old.theirs = &childRekey{nc: nc, ni: bytes.Clone(nonce.Data), nr: nr, done: true}
	}
	answer(ps...)
}
