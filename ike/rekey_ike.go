package ike

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// IKE SA rekeying (RFC 7296 §1.3.2, §2.8, §2.18). A CREATE_CHILD_SA on
// the old IKE SA carries an IKE proposal with the new SPI, a nonce and a
// fresh key exchange; SKEYSEED of the new SA comes from the old SA's SK_d
// and PRF. The new SA's initiator is whoever started the rekey, its
// message IDs start at 0, and the children move to it unchanged (their
// keys came from the old SK_d but stay valid). The rekey's initiator then
// deletes the old SA.
//
// Collisions (§2.8.2, §2.25.2): a peer's rekey that meets ours is
// answered as usual; once ours is answered too, the new SA made by the
// exchange with the lowest of the four nonces is redundant and its
// initiator deletes it, the children move to the other, and that one's
// initiator deletes the old SA (collision.go). While our rekey is out,
// the peer's child creates and rekeys get TEMPORARY_FAILURE, and our own
// other work on the SA (child create, rekey, delete, the IKE delete)
// waits and is carried out on the SA that survives. A peer's rekey while
// a child exchange of ours is out gets TEMPORARY_FAILURE (§2.25.1).

// ikeRekeyRetry is the wait, plus up to as much again at random, before
// retrying a rekey the peer declined. (A variable for tests.)
var ikeRekeyRetry = 10 * time.Second

// oldSAGrace is how long an SA waits for the peer's delete of it — an
// old SA the peer rekeyed, a redundant SA of the peer's after a
// collision — before deleting it itself. (A variable for tests.)
var oldSAGrace = 30 * time.Second

// ikeRekey is our IKE rekey in flight.
type ikeRekey struct {
	spi uint64 // our SPI of the new SA (reserved in e.reserved)
	ni  []byte
	dh  ikecrypto.KeyExchange
	// add are the secrets of the IKE_FOLLOWUP_KE exchanges, once done
	// (RFC 9370; nil before or without them).
	add [][]byte
	// later is the work that waits for the rekey's outcome, run on the
	// surviving SA.
	later []func(*ikeSA)
}

// peerIKERekey is the peer's rekey of the SA, answered while ours was
// out: the new SA it made, not yet holding the children, and the
// exchange's nonces.
type peerIKERekey struct {
	nsa    *ikeSA
	ni, nr []byte
}

// armIKERekey schedules the SA's rekey: rekey_time less a random part
// of rand_time, so both ends rarely start together.
func (sa *ikeSA) armIKERekey() {
	var d time.Duration
	if sa.conn != nil && sa.conn.RekeyTime > 0 {
		d = ikeRekeyIn(sa.conn, randN)
		sa.armIKERekeyIn(d)
	}
	sa.armRecovery(d) // reauthentication, hard end, keepalives (reauth.go)
}

func (sa *ikeSA) armIKERekeyIn(d time.Duration) {
	sa.rekeyTimer.Stop()
	sa.rekeyTimer = sa.e.after(d, func() {
		sa.rekeyTimer = nil
		sa.rekeyIKE()
	})
}

// deferIKE runs f on the SA that survives our IKE rekey in flight, and
// reports whether it did defer (false: no rekey is out, go ahead).
func (sa *ikeSA) deferIKE(f func(*ikeSA)) bool {
	if sa.rekeyIKEOut == nil {
		return false
	}
	sa.rekeyIKEOut.later = append(sa.rekeyIKEOut.later, f)
	return true
}

// childExchangeOut reports whether a child exchange of ours is in flight
// or queued on the SA.
func (sa *ikeSA) childExchangeOut() bool {
	if r := sa.w.inflight; r != nil && r.exch == message.CREATE_CHILD_SA {
		return true
	}
	for _, r := range sa.w.queue {
		if r.exch == message.CREATE_CHILD_SA || len(r.payloads) > 0 {
			return true
		}
	}
	return false
}

// rekeyIKE starts our rekey of the IKE SA.
func (sa *ikeSA) rekeyIKE() {
	if sa.state != ikeEstablished || sa.rekeyIKEOut != nil || sa.rekeyIKEIn != nil {
		return
	}
	if sa.quiet() || sa.w.busy() {
		// Not into a dead link, and not across our own exchanges: they
		// must finish on the SA that made them.
		sa.armIKERekeyIn(time.Second + randUpTo(time.Second))
		return
	}
	// The group the SA has is the one the peer is known to take.
	group := sa.conn.Proposals[0].DH[0]
	if offersGroup(sa.conn.Proposals, sa.suite.DH) {
		group = sa.suite.DH
	}
	sa.rekeyIKEWith(group)
}

// rekeyIKEWith sends our IKE rekey with a key exchange of group.
func (sa *ikeSA) rekeyIKEWith(group message.DHGroup) {
	dh, err := ikecrypto.NewKeyExchange(group)
	if err != nil {
		sa.logger().Error("cannot rekey the IKE SA", "err", err)
		return
	}
	rk := &ikeRekey{spi: sa.e.reserveSPI(), dh: dh, ni: sa.e.newNonce(true)}
	sa.rekeyIKEOut = rk
	sa.logger().Info("rekeying the IKE SA", "new-spi", fmt.Sprintf("%016x", rk.spi), "group", group.String())
	sp := ikeProposals(sa.conn.Proposals)
	for i := range sp.Proposals {
		sp.Proposals[i].SPI = binary.BigEndian.AppendUint64(nil, rk.spi)
	}
	sa.send(&request{exch: message.CREATE_CHILD_SA, kex: dh,
		payloads:   []message.Payload{sp, &message.Nonce{Data: rk.ni}, &message.KE{Group: group, Data: dh.PublicValue()}},
		onResponse: func(m *message.Message) { sa.rekeyIKEAnswered(rk, m) },
		onTimeout: func() {
			sa.endIKERekey(rk, nil)
			sa.destroyErr(errPeerGone("peer not responding to our IKE SA rekey"))
		},
		onDrop: func(why string) {
			sa.endIKERekey(rk, sa)
			sa.armIKERekeyIn(ikeRekeyRetry)
		}})
}

// endIKERekey forgets our rekey in flight and runs the work that waited
// for it on survivor (none if nil: the SA is gone).
func (sa *ikeSA) endIKERekey(rk *ikeRekey, survivor *ikeSA) {
	if sa.rekeyIKEOut != rk {
		return
	}
	sa.rekeyIKEOut = nil
	delete(sa.e.reserved, rk.spi)
	if survivor == nil {
		return
	}
	for _, f := range rk.later {
		f(survivor)
	}
}

// rekeyIKEAnswered completes our IKE rekey with the peer's answer.
func (sa *ikeSA) rekeyIKEAnswered(rk *ikeRekey, m *message.Message) {
	declined := func(why string) { sa.ikeRekeyDeclined(rk, why) }
	if n := m.Notify(message.INVALID_KE_PAYLOAD); n != nil && len(n.Data) == 2 && sa.rekeyIKEIn == nil {
		g := message.DHGroup(binary.BigEndian.Uint16(n.Data))
		if g != rk.dh.Method() && offersGroup(sa.conn.Proposals, g) {
			sa.logger().Info("peer asks for another key exchange method for the IKE SA rekey (INVALID_KE_PAYLOAD); retrying", "group", g.String())
			// The work waiting for this rekey waits for the next.
			later := rk.later
			rk.later = nil
			sa.endIKERekey(rk, sa)
			sa.rekeyIKEWith(g)
			if sa.rekeyIKEOut != nil {
				sa.rekeyIKEOut.later = later
			} else {
				for _, f := range later {
					f(sa)
				}
			}
			return
		}
	}
	for n := range m.Notifies() {
		if n.NotifyType.IsError() {
			declined("peer answered " + n.NotifyType.String())
			return
		}
	}
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	nonce, _ := m.Find(message.PayloadNonce).(*message.Nonce)
	if sap == nil || ke == nil || nonce == nil || len(sap.Proposals) != 1 {
		declined("answer lacks SA, KE or Nonce")
		return
	}
	chosen := &sap.Proposals[0]
	if len(chosen.SPI) != 8 || binary.BigEndian.Uint64(chosen.SPI) == 0 {
		declined(fmt.Sprintf("answer's IKE proposal has a %d-octet SPI, want 8 nonzero", len(chosen.SPI)))
		return
	}
	if err := acceptable(chosen, sa.conn.Proposals, message.ProtocolIKE, true); err != nil {
		declined("peer's IKE proposal: " + err.Error())
		return
	}
	suite, err := ikecrypto.IKESuiteFromProposal(chosen)
	if err != nil {
		declined("peer's IKE proposal: " + err.Error())
		return
	}
	if suite.DH != rk.dh.Method() || ke.Group != suite.DH {
		declined(fmt.Sprintf("peer chose key exchange %v but sent %v (we sent %v)", suite.DH, ke.Group, rk.dh.Method()))
		return
	}
	gir, err := sa.sharedKE(rk.dh, ke.Data)
	if err != nil {
		declined("peer's KE: " + err.Error())
		return
	}
	defer gir.Zero()
	if sa.rekeyFollowups(rk, suite, m) {
		return
	}
	spir := binary.BigEndian.Uint64(chosen.SPI)
	keys, err := deriveRekeyedIKEKeys(suite, sa.suite.PRF, sa.keys.SKd(), gir, rk.ni, nonce.Data, rk.add, rk.spi, spir)
	for _, s := range rk.add {
		clear(s)
	}
	if err != nil {
		declined(err.Error())
		return
	}
	nsa, err := sa.successor(true, rk.spi, spir, suite, keys)
	if err != nil {
		declined(err.Error())
		return
	}
	if sa.rekeyIKEIn != nil {
		sa.settleIKERekey(rk, nsa, nonce.Data)
		return
	}
	sa.handOver(nsa, "rekeyed by us")
	sa.endIKERekey(rk, nsa)
	// We started it: we delete the old SA (RFC 7296 §2.8).
	sa.startDelete("rekeyed")
}

// handleIKERekey answers the peer's rekey of this IKE SA.
func (sa *ikeSA) handleIKERekey(m *message.Message, sap *message.SA, answer func(...message.Payload)) {
	switch {
	case sa.rekeyIKEOut == nil && sa.childExchangeOut():
		sa.logger().Info("peer rekeys the IKE SA while a child exchange of ours is out: answering TEMPORARY_FAILURE")
		answer(&message.Notify{NotifyType: message.TEMPORARY_FAILURE})
		return
	case sa.rekeyIKEIn != nil:
		sa.logger().Info("peer rekeys the IKE SA a second time: answering TEMPORARY_FAILURE")
		answer(&message.Notify{NotifyType: message.TEMPORARY_FAILURE})
		return
	case sa.rekeyIKEOut != nil && hasAddKE(sa.conn.Proposals):
		sa.logger().Info("peer rekeys the IKE SA while our rekey (with additional key exchanges) is out: answering TEMPORARY_FAILURE")
		answer(&message.Notify{NotifyType: message.TEMPORARY_FAILURE})
		return
	}
	nonce, _ := m.Find(message.PayloadNonce).(*message.Nonce)
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	if nonce == nil || ke == nil {
		sa.logger().Warn("peer's IKE SA rekey lacks a nonce or KE: answering INVALID_SYNTAX")
		answer(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	chosen, ok, why := choose(sa.conn.Proposals, sap.Proposals)
	if !ok {
		sa.logger().Warn("peer's IKE SA rekey: answering NO_PROPOSAL_CHOSEN", "reason", why)
		answer(&message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
		return
	}
	var spii uint64
	for _, p := range sap.Proposals {
		if p.Num == chosen.Num && p.Protocol == message.ProtocolIKE && len(p.SPI) == 8 {
			spii = binary.BigEndian.Uint64(p.SPI)
		}
	}
	if spii == 0 {
		sa.logger().Warn("peer's IKE SA rekey: the chosen proposal has no 8-octet SPI; answering INVALID_SYNTAX")
		answer(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	group := adoptKEGroup(&chosen, sap, sa.conn.Proposals, ke.Group)
	if ke.Group != group {
		sa.logger().Info("peer's IKE SA rekey: asking for another key exchange method (INVALID_KE_PAYLOAD)", "sent", ke.Group.String(), "want", group.String())
		answer(&message.Notify{NotifyType: message.INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, uint16(group))})
		return
	}
	suite, err := ikecrypto.IKESuiteFromProposal(&chosen)
	if err != nil {
		sa.logger().Warn("peer's IKE SA rekey: chosen proposal unusable; answering NO_PROPOSAL_CHOSEN", "err", err)
		answer(&message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
		return
	}
	pub, gir, err := sa.respondKE(group, ke.Data)
	if err != nil {
		sa.logger().Warn("peer's IKE SA rekey: invalid KE; answering INVALID_SYNTAX", "err", err)
		answer(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	defer gir.Zero()
	nr := sa.e.newNonce(false)
	if adds := suite.AdditionalKEs(); len(adds) > 0 {
		sa.deferIKERekey(chosen, suite, adds, spii, gir, nonce.Data, nr, pub, answer)
		return
	}
	spir := sa.e.newSPI()
	keys, err := ikecrypto.DeriveRekeyedIKEKeys(suite, sa.suite.PRF, sa.keys.SKd(), gir, nonce.Data, nr, spii, spir)
	if err != nil {
		sa.logger().Error("peer's IKE SA rekey", "err", err)
		answer(&message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
		return
	}
	nsa, err := sa.successor(false, spii, spir, suite, keys)
	if err != nil {
		sa.logger().Error("peer's IKE SA rekey", "err", err)
		answer(&message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
		return
	}
	chosen.SPI = binary.BigEndian.AppendUint64(nil, spir)
	if sa.rekeyIKEOut != nil {
		// Both ends rekey at once: answered as usual, settled by the
		// nonces when ours is answered too (RFC 7296 §2.8.2). Until then
		// the new SA holds no children and defers the peer's requests.
		sa.logger().Info("peer rekeys the IKE SA while our rekey is out: a collision, settled by the nonces (RFC 7296 §2.8.2)")
		sa.rekeyIKEIn = &peerIKERekey{nsa: nsa, ni: bytes.Clone(nonce.Data), nr: nr}
		nsa.pendingOf = sa
		sa.adopt(nsa, "rekeyed by peer during our own rekey (collision pending)")
		answer(&message.SA{Proposals: []message.Proposal{chosen}}, &message.Nonce{Data: nr},
			&message.KE{Group: group, Data: pub})
		return
	}
	answer(&message.SA{Proposals: []message.Proposal{chosen}}, &message.Nonce{Data: nr},
		&message.KE{Group: group, Data: pub})
	sa.handOver(nsa, "rekeyed by peer")
	sa.awaitPeerDelete()
}

// awaitPeerDelete: the peer made the SA that replaced sa and deletes sa;
// if it does not, we do.
func (sa *ikeSA) awaitPeerDelete() {
	sa.rekeyTimer.Stop()
	sa.rekeyTimer = sa.e.after(oldSAGrace, func() {
		sa.rekeyTimer = nil
		if sa.state == ikeRekeyed {
			sa.startDelete("rekeyed; the peer did not delete the old IKE SA")
		}
	})
}

// successor builds the new IKE SA of a rekey: same connection, endpoints
// and link, new SPIs and keys; initiator says who started the rekey.
func (sa *ikeSA) successor(initiator bool, spii, spir uint64, suite ikecrypto.IKESuite, keys *ikecrypto.IKEKeys) (*ikeSA, error) {
	out, in, err := keys.Ciphers(initiator)
	if err != nil {
		return nil, fmt.Errorf("IKE ciphers: %w", err)
	}
	now := sa.e.clk.Now()
	n := &ikeSA{e: sa.e, id: sa.e.newIKEID(), conn: sa.conn, initiator: initiator, spii: spii, spir: spir, created: sa.e.stampOf(now),
		sock: sa.sock, local: sa.local, remote: sa.remote, natLocal: sa.natLocal, natRemote: sa.natRemote,
		suite: suite, keys: keys, out: out, in: in, lastHeard: sa.lastHeard,
		link: sa.link, ifIndex: sa.ifIndex, timeHandshake: true, rec: sa.rec.inherited()}
	n.initExt = sa.initExt // what IKE_SA_INIT announced holds for the rekeyed SA
	n.mob = sa.mob.inherited()
	n.setupWindow()
	if n.quiet() {
		n.w.paused = true
	}
	return n, nil
}

// adopt registers nsa, a new SA of a rekey, as established.
func (sa *ikeSA) adopt(nsa *ikeSA, how string) {
	e := sa.e
	if e.sas[nsa.localSPI()] == nsa {
		return
	}
	e.addSA(nsa.localSPI(), nsa)
	nsa.estAt = e.nowStamp()
	nsa.setState(ikeEstablished, fmt.Sprintf("%s, replaces %s", how, sa.spis()))
	e.placeSA(nsa)
}

// handOver makes nsa the established successor of sa: the children move
// to it, sa stops its timers and waits for its delete.
func (sa *ikeSA) handOver(nsa *ikeSA, how string) {
	sa.adopt(nsa, how)
	nsa.pendingOf = nil
	for _, ch := range sa.children {
		ch.ike = nsa
		nsa.children = append(nsa.children, ch)
		if ch.outSPI != 0 && sa.byOut.get(ch.outSPI) == ch {
			nsa.byOut.put(ch.outSPI, ch)
		}
	}
	sa.children, sa.byOut = nil, outIndex{}
	// changes.go: adopted before (a collision), it gains the children now.
	sa.e.changed(nsa)
	nsa.vips, sa.vips = sa.vips, nil // the virtual IPs stay with the SA's successor
	sa.rec.replacedBy = nsa
	sa.stopLiveness()
	sa.rekeyTimer.Stop()
	sa.rekeyTimer = nil
	sa.setState(ikeRekeyed, fmt.Sprintf("%s, replaced by %s", how, nsa.spis()))
	nsa.armLiveness()
	nsa.armIKERekey()
}

// reserveSPI picks an SPI for an IKE SA under negotiation that no other
// SA has or will take meanwhile.
func (e *Engine) reserveSPI() uint64 {
	spi := e.newSPI()
	e.reserved[spi] = true
	return spi
}

// ikeRekeyDeclined ends our IKE rekey that did not succeed: during a
// collision whose other exchange did, that one replaces the SA; else the
// rekey is tried again later.
func (sa *ikeSA) ikeRekeyDeclined(rk *ikeRekey, why string) {
	if in := sa.rekeyIKEIn; in != nil {
		// A collision whose other exchange succeeded: that one
		// replaces the SA (the peer deletes this one).
		sa.logger().Info("our IKE SA rekey failed during a collision; the peer's replaces the SA", "reason", why)
		sa.handOver(in.nsa, "rekeyed by peer (collision; ours failed)")
		sa.endIKERekey(rk, in.nsa)
		sa.awaitPeerDelete()
		return
	}
	retry := ikeRekeyRetry + randUpTo(ikeRekeyRetry)
	sa.logger().Warn("IKE SA rekey declined; trying again later", "reason", why, "retry-in", retry.String())
	sa.endIKERekey(rk, sa)
	sa.armIKERekeyIn(retry)
}
