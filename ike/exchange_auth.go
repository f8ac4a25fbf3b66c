package ike

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

func idPayload(id config.Identity, responder bool) *message.ID {
	return &message.ID{Responder: responder, IDType: id.Type, Data: id.Data}
}

// sendAuth is the initiator's IKE_AUTH request with the first child.
func (sa *ikeSA) sendAuth() {
	c := sa.conn
	var idr *message.ID
	if !c.RemoteID.Any && !c.RemoteID.Wildcard() {
		idr = idPayload(c.RemoteID, true)
	}
	made(&sa.hs).authMID = sa.w.nextID // nothing is in flight: IKE_AUTH takes it
	ps, err := sa.ourAuth(c, idPayload(c.LocalID, false), idr)
	if err != nil {
		sa.destroyErr(err)
		return
	}
	// INITIAL_CONTACT (unique.go) after IDi.
	ps = append(ps[:1:1], append(sa.initialContact(), ps[1:]...)...)
	ps = append(ps, sa.mobikeAnnounce()...)
	ps = append(ps, sa.vipRequest()...) // vips.go
	if ch := sa.first; ch != nil {
		ch.initiator = true
		ch.localAddr, ch.remoteAddr = sa.local.Addr(), sa.remote.Addr()
		if err := sa.e.allocSPI(ch); err != nil {
			ch.fail(err)
			sa.destroy("cannot start the first child: " + err.Error())
			return
		}
		ch.localTS = sa.localRanges(ch.cfg, ch.localAddr)
		ch.remoteTS = configRanges(ch.cfg.RemoteTS, ch.remoteAddr)
		if a := ch.acquired(); a != nil && a.Packet.Src.IsValid() && a.Packet.Dst.IsValid() {
			// RFC 7296 §2.9: the packet that triggered the acquire first.
			ch.localTS = append([]tsRange{hostRange(a.Packet.Src.Addr(), a.Packet.Proto, a.Packet.SrcPort)}, ch.localTS...)
			ch.remoteTS = append([]tsRange{hostRange(a.Packet.Dst.Addr(), a.Packet.Proto, a.Packet.DstPort)}, ch.remoteTS...)
		}
		if ch.mode == kernelops.ModeTransport {
			ps = append(ps, &message.Notify{NotifyType: message.USE_TRANSPORT_MODE})
		}
		ps = append(ps, espProposals(ch.cfg.ESPProposals, ch.inSPI, false),
			messageTS(ch.localTS, false), messageTS(ch.remoteTS, true))
	}
	sa.setState(ikeAuthSent, "")
	sa.send(&request{exch: message.IKE_AUTH, payloads: ps, onResponse: sa.handleAuthResponse,
		onTimeout: func() { sa.destroyErr(errPeerGone("peer not responding to IKE_AUTH")) }})
}

// handleAuthResponse is the initiator's end of IKE_AUTH.
func (sa *ikeSA) handleAuthResponse(m *message.Message) {
	idr, _ := m.Find(message.PayloadIDr).(*message.ID)
	auth, _ := m.Find(message.PayloadAUTH).(*message.Auth)
	if idr == nil || auth == nil {
		var why error = ourNotify(message.INVALID_SYNTAX, "IKE_AUTH response without IDr and AUTH")
		for n := range m.Notifies() {
			if n.NotifyType.IsError() {
				why = peerNotify(n.NotifyType, "IKE_AUTH refused")
				if n.NotifyType == message.AUTHENTICATION_FAILED {
					why = peerNotify(n.NotifyType, "%s, identities or IKE proposals differ (we are %s)", credentialsText(sa.conn), sa.conn.LocalID)
				}
			}
		}
		sa.destroyErr(why)
		return
	}
	if !sa.conn.RemoteID.Matches(idr.IDType, idr.Data) {
		sa.authFailed(fmt.Sprintf("peer identity %s is not the configured %s", idText(idr), sa.conn.RemoteID))
		return
	}
	why, ok := sa.precomputedPeer(sa.conn) // auth_offload.go
	if !ok {
		why = sa.checkPeerAuth(sa.conn, m, idr, auth)
	}
	if why != "" {
		sa.authFailed(why)
		return
	}
	if ic, _ := sa.peerAuthenticated(m, idr); ic { // unique.go: as initiator only INITIAL_CONTACT applies
		defer sa.dropForInitialContact() // once our child is in
	}
	sa.estAt = sa.e.nowStamp()
	sa.setState(ikeEstablished, "authenticated "+idText(idr))
	defer sa.dropHandshake() // afterauth.go, once the child is derived
	sa.mobikeAnswered(m)
	if err := sa.takeVIPs(m); err != nil { // vips.go
		if ch := sa.first; ch != nil {
			sa.first = nil
			ch.fail(err)
		}
		sa.startDelete(err.Error())
		return
	}
	sa.armLiveness()
	sa.armIKERekey()
	if ch := sa.first; ch != nil {
		sa.first = nil
		hs := orZero(sa.hs)
		if err := sa.completeChild(ch, m, hs.ni, hs.nr, nil, false); err != nil {
			ch.fail(err)
			return
		}
		sa.e.handshakeDone(sa)
		ch.notify(nil)
	}
}

// authFailed tells the peer its AUTH failed (RFC 7296 §2.21.2: in a
// separate INFORMATIONAL) and drops the SA.
func (sa *ikeSA) authFailed(why string) {
	m := &message.Message{Header: message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: message.INFORMATIONAL,
		Initiator: sa.initiator, MessageID: sa.w.nextID},
		Payloads: []message.Payload{&message.Notify{NotifyType: message.AUTHENTICATION_FAILED}}}
	if b, err := m.EncodeEncrypted(sa.out); err == nil {
		sa.e.sendTo(sa.sock, sa.local, sa.remote, b)
	}
	sa.destroyErr(ourNotify(message.AUTHENTICATION_FAILED, "%s", why))
}

// completeChild is the initiator's end of a child negotiation: check the
// responder's choice, derive keys (with the key exchange of dh, which a
// CREATE_CHILD_SA — create — with PFS sent), install. On any problem it
// returns why — a *NotifyError for the peer's error notify or for our
// refusal of its answer — and, if the peer installed its half, tells
// the peer; the caller fails the child.
func (sa *ikeSA) completeChild(ch *childSA, m *message.Message, ni, nr []byte, dh ikecrypto.KeyExchange, create bool) error {
	for n := range m.Notifies() {
		if !n.NotifyType.IsError() {
			continue
		}
		why := "peer refused the child"
		switch n.NotifyType {
		case message.TS_UNACCEPTABLE:
			why = fmt.Sprintf("it accepts none of TSi %s TSr %s", rangesString(ch.localTS), rangesString(ch.remoteTS))
		case message.NO_PROPOSAL_CHOSEN:
			why = "it accepts none of our ESP proposals " + proposalsText(ch.cfg.ESPProposals)
		}
		ne := peerNotify(n.NotifyType, "%s", why)
		if n.NotifyType == message.INVALID_KE_PAYLOAD && len(n.Data) == 2 {
			ne.Reason = fmt.Sprintf("it asks for key exchange %v", message.DHGroup(binary.BigEndian.Uint16(n.Data)))
		}
		return ne
	}
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	tsi, _ := m.Find(message.PayloadTSi).(*message.TS)
	tsr, _ := m.Find(message.PayloadTSr).(*message.TS)
	if sap == nil || tsi == nil || tsr == nil || len(sap.Proposals) != 1 {
		return ourNotify(message.INVALID_SYNTAX, "the answer carries no child (SA, TSi, TSr)")
	}
	chosen := &sap.Proposals[0]
	peerInstalled := len(chosen.SPI) == 4
	reject := func(err error) error {
		if peerInstalled {
			sa.send(&request{exch: message.INFORMATIONAL, payloads: []message.Payload{
				&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{ch.inSPI}}}})
		}
		return err
	}
	if err := acceptable(chosen, ch.cfg.ESPProposals, message.ProtocolESP, create); err != nil {
		return reject(ourNotify(message.NO_PROPOSAL_CHOSEN, "responder's ESP proposal: %v", err))
	}
	suite, err := ikecrypto.ChildSuiteFromProposal(chosen)
	if err != nil {
		return reject(ourNotify(message.NO_PROPOSAL_CHOSEN, "responder's ESP proposal: %v", err))
	}
	// PFS: a chosen key exchange must be the one we sent, and its KE
	// payload must be there; no keys without g^ir then.
	var gir ikecrypto.Key
	if g := keGroup(chosen); g != 0 {
		ke, _ := m.Find(message.PayloadKE).(*message.KE)
		switch {
		case dh == nil || dh.Method() != g:
			return reject(ourNotify(message.NO_PROPOSAL_CHOSEN, "responder chose key exchange %v, which we did not send", g))
		case ke == nil:
			return reject(ourNotify(message.NO_PROPOSAL_CHOSEN, "responder chose key exchange %v but sent no KE payload (no PFS without it)", g))
		case ke.Group != g:
			return reject(ourNotify(message.INVALID_SYNTAX, "responder chose key exchange %v but its KE payload is %v", g, ke.Group))
		}
		if gir, err = sa.sharedKE(dh, ke.Data); err != nil {
			return reject(ourNotify(message.INVALID_SYNTAX, "responder's KE: %v", err))
		}
		defer gir.Zero()
	}
	ch.outSPI = spiFrom(chosen.SPI)
	lts, rts := rangesOf(tsi), rangesOf(tsr)
	if !allWithin(lts, ch.localTS) || !allWithin(rts, ch.remoteTS) || len(lts) == 0 || len(rts) == 0 {
		return reject(ourNotify(message.TS_UNACCEPTABLE, "responder's traffic selectors TSi %s TSr %s are not within ours (TSi %s TSr %s)",
			rangesString(lts), rangesString(rts), rangesString(ch.localTS), rangesString(ch.remoteTS)))
	}
	if ch.mode == kernelops.ModeTransport && m.Notify(message.USE_TRANSPORT_MODE) == nil {
		return reject(ourNotify(message.NO_PROPOSAL_CHOSEN, "responder did not accept transport mode"))
	}
	ch.localTS, ch.remoteTS, ch.suite = lts, rts, suite
	if err := sa.finishChild(ch, ni, nr, gir); err != nil {
		return reject(err)
	}
	return nil
}

func allWithin(got, proposed []tsRange) bool {
	for _, g := range got {
		ok := false
		for _, p := range proposed {
			ok = ok || g.within(p)
		}
		if !ok {
			return false
		}
	}
	return true
}

// finishChild derives the child's keys and installs it.
func (sa *ikeSA) finishChild(ch *childSA, ni, nr []byte, gir ikecrypto.Key) error {
	keys, err := sa.deriveChildKeys(ch, ni, nr, gir)
	ch.zeroSecrets()
	if err != nil {
		return fmt.Errorf("derive child keys: %w", err)
	}
	ch.keys = keys
	if sa.natAny() {
		ch.encap = &kernelops.Encap{SrcPort: sa.local.Port(), DstPort: sa.remote.Port()}
	}
	ch.lifetime = childLifetime(ch.cfg, randN)
	if err := sa.e.install(ch); err != nil {
		keys.Zero()
		return fmt.Errorf("dataplane install failed, rolled back: %w", err)
	}
	sa.e.haChild(sa, ch) // hastate.go: the one moment the keys are here
	keys.Zero()
	ch.keys = nil // in the dataplane now: ≈200 B less per child
	ch.estAt = sa.e.nowStamp()
	sa.e.bySA.add(ch)
	sa.addChild(ch)
	ch.setState(childInstalled, "")
	sa.e.watchIdle(ch)
	sa.armLiveness()
	sa.e.haIKE(sa)
	return nil
}

// pickConn chooses the connection an IKE_AUTH request authenticates
// against: the peer's identity must match its remote id, and IDr, when
// sent, its local id; and its IKE proposals must hold the suite chosen
// at IKE_SA_INIT (fits), which was chosen from the first candidate's.
// When identities match but no such connection fits the suite, it
// returns the identity match with fitErr set.
func pickConn(cands []*config.Connection, idi, idr *message.ID, fits func(*config.Connection) error) (c *config.Connection, fitErr error) {
	var loose, misfit *config.Connection
	for _, c := range cands {
		if !c.RemoteID.Matches(idi.IDType, idi.Data) {
			continue
		}
		if err := fits(c); err != nil {
			if misfit == nil {
				misfit, fitErr = c, err
			}
			continue
		}
		if idr == nil || c.LocalID.Matches(idr.IDType, idr.Data) {
			return c, nil
		}
		if loose == nil {
			loose = c
		}
	}
	if loose != nil {
		return loose, nil
	}
	return misfit, fitErr
}

// handleAuthRequest is the responder's side of IKE_AUTH.
func (sa *ikeSA) handleAuthRequest(m *message.Message, s *sock, local, remote netip.AddrPort) {
	fail := func(why string) {
		sa.respond(m, []message.Payload{&message.Notify{NotifyType: message.AUTHENTICATION_FAILED}}, s, local, remote)
		sa.destroyErr(ourNotify(message.AUTHENTICATION_FAILED, "%s", why))
	}
	idi, _ := m.Find(message.PayloadIDi).(*message.ID)
	idr, _ := m.Find(message.PayloadIDr).(*message.ID)
	auth, _ := m.Find(message.PayloadAUTH).(*message.Auth)
	if idi == nil || auth == nil {
		fail("IKE_AUTH request without IDi or AUTH (EAP is not supported)")
		return
	}
	if why := sa.intermediateDone(); why != "" {
		fail(why)
		return
	}
	sa.readAuthHints(m)
	made(&sa.hs).authMID = m.MessageID
	conn, misfit := pickConn(orZero(sa.hs).cands, idi, idr, func(c *config.Connection) error {
		return fitsOurs(&sa.hs.ikeChosen, c.Proposals, message.ProtocolIKE)
	})
	if conn == nil {
		fail(fmt.Sprintf("no connection accepts peer identity %s", idText(idi)))
		return
	}
	if misfit != nil {
		// The suite came from another connection's proposals at
		// IKE_SA_INIT; this one does not allow it.
		fail(fmt.Sprintf("connection %s accepts peer %s but not the IKE suite %s negotiated in IKE_SA_INIT (%v)",
			conn.Name, idi, sa.suite, misfit))
		return
	}
	sa.e.setConn(sa, conn)
	why, ok := sa.precomputedPeer(conn) // auth_offload.go
	if !ok {
		why = sa.checkPeerAuth(conn, m, idi, auth)
	}
	if why != "" {
		fail(why)
		return
	}
	ic, err := sa.peerAuthenticated(m, idi) // unique.go
	if err != nil {
		fail(err.Error())
		return
	}
	if ic {
		defer sa.dropForInitialContact() // once our child is in
	}
	cp, err := sa.assignVIPs(m, conn, idText(idi)) // pools.go
	if err != nil {
		sa.respond(m, []message.Payload{&message.Notify{NotifyType: message.INTERNAL_ADDRESS_FAILURE}}, s, local, remote)
		sa.destroyErr(ourNotify(message.INTERNAL_ADDRESS_FAILURE, "%v", err))
		return
	}
	mine, err, ok := sa.precomputedMine(conn)
	if !ok {
		mine, err = sa.ourAuth(conn, idPayload(conn.LocalID, true), nil)
	}
	if err != nil {
		fail(err.Error())
		return
	}
	if cp != nil {
		mine = append(mine, cp)
	}
	orZero(sa.hs).halfOpenTimer.Stop()
	sa.estAt = sa.e.nowStamp()
	sa.setState(ikeEstablished, "authenticated "+idText(idi))
	defer sa.dropHandshake() // afterauth.go, once the child is derived
	ps := append(mine, sa.mobikeAnswer(m)...)
	cps, _ := sa.acceptChild(m, conn.Children, orZero(sa.hs).ni, orZero(sa.hs).nr, nil, nil)
	ps = append(ps, cps...)
	sa.respond(m, ps, s, local, remote)
	sa.armLiveness()
	sa.armIKERekey()
}

// acceptChild is the responder's child negotiation (IKE_AUTH and
// CREATE_CHILD_SA): choose a child configuration that fits
// (selectChild), allocate, derive, install; it returns the payloads of
// the answer, or an error notify that says why not, and the installed
// child (nil when refused).
//
// ke is the initiator's KE payload of a CREATE_CHILD_SA (nil without
// one; the answer then carries ours when PFS applies). old, for a rekey,
// is the child being replaced: the new one keeps its selectors.
func (sa *ikeSA) acceptChild(m *message.Message, children []*config.Child, ni, nr []byte, ke *message.KE, old *childSA) ([]message.Payload, *childSA) {
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	tsi, _ := m.Find(message.PayloadTSi).(*message.TS)
	tsr, _ := m.Find(message.PayloadTSr).(*message.TS)
	if sap == nil && tsi == nil && tsr == nil {
		return nil, nil // childless
	}
	refuse := func(n message.NotifyType, why string, data []byte) ([]message.Payload, *childSA) {
		sa.logger().Warn("refusing the peer's child", "notify", n.String(), "reason", why)
		sa.e.publish(Event{Kind: "child", State: "refused", IKEID: sa.id, Reason: n.String() + ": " + why, SPIs: sa.eventSPIs(), Name: sa.name()})
		return []message.Payload{&message.Notify{NotifyType: n, Data: data}}, nil
	}
	if sap == nil || tsi == nil || tsr == nil {
		return refuse(message.INVALID_SYNTAX, "SA, TSi and TSr must come together", nil)
	}
	create := m.Exchange == message.CREATE_CHILD_SA
	o := childOffer{proposals: sap.Proposals, sap: sap, tsi: rangesOf(tsi), tsr: rangesOf(tsr),
		transport: m.Notify(message.USE_TRANSPORT_MODE) != nil, create: create, remoteDyn: sa.leasedAddrs()}
	if ke != nil {
		o.ke = ke.Group
	}
	localAddr, remoteAddr := sa.local.Addr(), sa.remote.Addr()
	var keep *[2][]tsRange
	if old != nil {
		keep = &[2][]tsRange{old.localTS, old.remoteTS}
	}
	choice, no := selectChild(children, o, localAddr, remoteAddr, keep)
	if no != nil {
		if no.notify == message.INVALID_KE_PAYLOAD {
			sa.logger().Info("CREATE_CHILD_SA: asking for another key exchange method (INVALID_KE_PAYLOAD)", "reason", no.why)
			return []message.Payload{&message.Notify{NotifyType: no.notify, Data: no.data}}, nil
		}
		return refuse(no.notify, no.why, no.data)
	}
	var peerSPI []byte
	for _, p := range sap.Proposals {
		if p.Num == choice.proposal.Num && p.Protocol == message.ProtocolESP {
			peerSPI = p.SPI
		}
	}
	cc, chosen := choice.cfg, choice.proposal
	ch := &childSA{e: sa.e, id: sa.e.newChildID(), cfg: cc, ike: sa, state: childNegotiating, reqid: cc.ReqID, mode: cc.Mode,
		localAddr: localAddr, remoteAddr: remoteAddr, localTS: choice.local, remoteTS: choice.remote, outSPI: spiFrom(peerSPI)}
	suite, err := ikecrypto.ChildSuiteFromProposal(&chosen)
	if err != nil || ch.outSPI == 0 {
		return refuse(message.NO_PROPOSAL_CHOSEN, fmt.Sprintf("chosen proposal unusable (SPI %x): %v", peerSPI, err), nil)
	}
	ch.suite = suite
	if old != nil { // a rekey keeps the reqid (reqidindex.go)
		ch.reqid, ch.keepReqID = old.reqid, true
	}
	var gir ikecrypto.Key
	var ourKE *message.KE
	if choice.group != 0 {
		pub, secret, err := sa.respondKE(choice.group, ke.Data)
		if err != nil {
			return refuse(message.INVALID_SYNTAX, "KE: "+err.Error(), nil)
		}
		gir = secret
		defer gir.Zero()
		ourKE = &message.KE{Group: choice.group, Data: pub}
	}
	if err := sa.e.allocSPI(ch); err != nil {
		ch.fail(err)
		return refuse(message.TEMPORARY_FAILURE, err.Error(), nil)
	}
	var link []byte
	if adds := suite.AdditionalKEs(); create && len(adds) > 0 {
		// RFC 9370: installed once the IKE_FOLLOWUP_KE exchanges are done.
		link = sa.deferChild(ch, old, adds, ni, nr, gir)
	} else if err := sa.finishChild(ch, ni, nr, gir); err != nil {
		ch.fail(err)
		return refuse(message.TEMPORARY_FAILURE, err.Error(), nil)
	}
	chosen.SPI = spiBytes(ch.inSPI)
	var ps []message.Payload
	if ch.mode == kernelops.ModeTransport {
		ps = append(ps, &message.Notify{NotifyType: message.USE_TRANSPORT_MODE})
	}
	ps = append(ps, &message.SA{Proposals: []message.Proposal{chosen}})
	if create {
		ps = append(ps, &message.Nonce{Data: nr})
		if ourKE != nil {
			ps = append(ps, ourKE)
		}
	}
	ps = append(ps, messageTS(choice.remote, false), messageTS(choice.local, true))
	if link != nil {
		return append(ps, &message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: link}), nil
	}
	return ps, ch
}
