package ike

import (
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

// pskAuth computes our AUTH payload data (RFC 7296 §2.15).
func (sa *ikeSA) pskAuth(psk []byte, id *message.ID) ([]byte, error) {
	skp, real, nonce := sa.keys.SKpi, sa.initReq, sa.nr
	if !sa.initiator {
		skp, real, nonce = sa.keys.SKpr, sa.initResp, sa.ni
	}
	oct, err := ikecrypto.SignedOctets(sa.suite.PRF, skp, real, nonce, id.Body())
	if err != nil {
		return nil, err
	}
	return ikecrypto.PSKAuth(sa.suite.PRF, psk, oct)
}

// verifyPeerAuth checks the peer's AUTH payload with psk.
func (sa *ikeSA) verifyPeerAuth(psk []byte, id *message.ID, auth *message.Auth) bool {
	if auth.Method != message.AuthSharedKeyMIC {
		return false
	}
	skp, real, nonce := sa.keys.SKpr, sa.initResp, sa.ni
	if !sa.initiator {
		skp, real, nonce = sa.keys.SKpi, sa.initReq, sa.nr
	}
	oct, err := ikecrypto.SignedOctets(sa.suite.PRF, skp, real, nonce, id.Body())
	if err != nil {
		return false
	}
	ok, err := ikecrypto.VerifyPSKAuth(sa.suite.PRF, psk, oct, auth.Data)
	return err == nil && ok
}

// sendAuth is the initiator's IKE_AUTH request with the first child.
func (sa *ikeSA) sendAuth() {
	c := sa.conn
	idi := idPayload(c.LocalID, false)
	auth, err := sa.pskAuth(c.PSK, idi)
	if err != nil {
		sa.destroy("AUTH: " + err.Error())
		return
	}
	ps := []message.Payload{idi}
	if !c.RemoteID.Any {
		ps = append(ps, idPayload(c.RemoteID, true))
	}
	ps = append(ps, &message.Auth{Method: message.AuthSharedKeyMIC, Data: auth})
	if ch := sa.first; ch != nil {
		ch.localAddr, ch.remoteAddr = sa.local.Addr(), sa.remote.Addr()
		if err := sa.e.allocSPI(ch); err != nil {
			ch.fail(err.Error())
			sa.destroy("cannot start the first child: " + err.Error())
			return
		}
		ch.localTS = configRanges(ch.cfg.LocalTS, ch.localAddr)
		ch.remoteTS = configRanges(ch.cfg.RemoteTS, ch.remoteAddr)
		if a := ch.acquire; a != nil && a.Packet.Src.IsValid() && a.Packet.Dst.IsValid() {
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
		onTimeout: func() { sa.destroy("peer not responding to IKE_AUTH") }})
}

// handleAuthResponse is the initiator's end of IKE_AUTH.
func (sa *ikeSA) handleAuthResponse(m *message.Message) {
	idr, _ := m.Find(message.PayloadIDr).(*message.ID)
	auth, _ := m.Find(message.PayloadAUTH).(*message.Auth)
	if idr == nil || auth == nil {
		why := "IKE_AUTH response without IDr and AUTH"
		for _, n := range m.Notifies() {
			if n.NotifyType.IsError() {
				why = fmt.Sprintf("peer answered IKE_AUTH with %v", n.NotifyType)
				if n.NotifyType == message.AUTHENTICATION_FAILED {
					why = "peer refused our authentication (AUTHENTICATION_FAILED): pre-shared key or identities differ (we are " + sa.conn.LocalID.String() + ")"
				}
			}
		}
		sa.destroy(why)
		return
	}
	if !sa.conn.RemoteID.Matches(idr.IDType, idr.Data) {
		sa.authFailed(fmt.Sprintf("peer identity %s is not the configured %s", idr, sa.conn.RemoteID))
		return
	}
	if !sa.verifyPeerAuth(sa.conn.PSK, idr, auth) {
		sa.authFailed(fmt.Sprintf("peer %s's AUTH (%v) does not verify with our pre-shared key", idr, auth.Method))
		return
	}
	sa.estAt = sa.e.clk.Now()
	sa.setState(ikeEstablished, "authenticated "+idr.String())
	sa.armLiveness()
	sa.armIKERekey()
	if ch := sa.first; ch != nil {
		sa.first = nil
		sa.completeChild(ch, m, sa.ni, sa.nr, nil)
	}
}

// authFailed tells the peer its AUTH failed (RFC 7296 §2.21.2: in a
// separate INFORMATIONAL) and drops the SA.
func (sa *ikeSA) authFailed(why string) {
	m := &message.Message{Header: message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: message.INFORMATIONAL,
		Initiator: sa.initiator, MessageID: sa.nextMsgID},
		Payloads: []message.Payload{&message.Notify{NotifyType: message.AUTHENTICATION_FAILED}}}
	if b, err := m.EncodeEncrypted(sa.out); err == nil {
		sa.e.sendTo(sa.sock, sa.local, sa.remote, b)
	}
	sa.destroy("authentication failed: " + why)
}

// completeChild is the initiator's end of a child negotiation: check the
// responder's choice, derive keys, install; on any problem the child
// fails and, if the peer installed its half, the peer is told.
func (sa *ikeSA) completeChild(ch *childSA, m *message.Message, ni, nr []byte, gir ikecrypto.Key) {
	for _, n := range m.Notifies() {
		if !n.NotifyType.IsError() {
			continue
		}
		why := fmt.Sprintf("peer refused the child with %v", n.NotifyType)
		switch n.NotifyType {
		case message.TS_UNACCEPTABLE:
			why += fmt.Sprintf(": it accepts none of TSi %s TSr %s", rangesString(ch.localTS), rangesString(ch.remoteTS))
		case message.NO_PROPOSAL_CHOSEN:
			why += ": it accepts none of our ESP proposals " + proposalsText(ch.cfg.ESPProposals)
		}
		ch.fail(why)
		return
	}
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	tsi, _ := m.Find(message.PayloadTSi).(*message.TS)
	tsr, _ := m.Find(message.PayloadTSr).(*message.TS)
	if sap == nil || tsi == nil || tsr == nil || len(sap.Proposals) != 1 {
		ch.fail("the answer carries no child (SA, TSi, TSr)")
		return
	}
	chosen := &sap.Proposals[0]
	peerInstalled := len(chosen.SPI) == 4
	reject := func(why string) {
		ch.fail(why)
		if peerInstalled {
			sa.send(&request{exch: message.INFORMATIONAL, payloads: []message.Payload{
				&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{ch.inSPI}}}})
		}
	}
	if err := acceptable(chosen, ch.cfg.ESPProposals, message.ProtocolESP); err != nil {
		reject("responder's ESP proposal: " + err.Error())
		return
	}
	suite, err := ikecrypto.ChildSuiteFromProposal(chosen)
	if err != nil {
		reject("responder's ESP proposal: " + err.Error())
		return
	}
	ch.outSPI = spiFrom(chosen.SPI)
	lts, rts := rangesOf(tsi), rangesOf(tsr)
	if !allWithin(lts, ch.localTS) || !allWithin(rts, ch.remoteTS) || len(lts) == 0 || len(rts) == 0 {
		reject(fmt.Sprintf("responder's traffic selectors TSi %s TSr %s are not within ours (TSi %s TSr %s)",
			rangesString(lts), rangesString(rts), rangesString(ch.localTS), rangesString(ch.remoteTS)))
		return
	}
	if ch.mode == kernelops.ModeTransport && m.Notify(message.USE_TRANSPORT_MODE) == nil {
		reject("responder did not accept transport mode")
		return
	}
	ch.localTS, ch.remoteTS, ch.suite = lts, rts, suite
	if err := sa.finishChild(ch, ni, nr, gir); err != nil {
		reject(err.Error())
		return
	}
	sa.e.handshakeDone(sa)
	ch.notify(nil)
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
	keys, err := ikecrypto.DeriveChildKeys(sa.suite.PRF, sa.keys.SKd, ch.suite, gir, ni, nr)
	if err != nil {
		return fmt.Errorf("derive child keys: %w", err)
	}
	ch.keys = keys
	if sa.natAny() {
		ch.encap = &kernelops.Encap{SrcPort: sa.local.Port(), DstPort: sa.remote.Port()}
	}
	if err := sa.e.install(ch); err != nil {
		keys.Zero()
		return fmt.Errorf("dataplane install failed, rolled back: %w", err)
	}
	keys.Zero()
	ch.estAt = sa.e.clk.Now()
	sa.children = append(sa.children, ch)
	ch.setState(childInstalled, "")
	sa.e.watchIdle(ch)
	sa.armLiveness()
	return nil
}

// pickConn chooses the connection an IKE_AUTH request authenticates
// against: the peer's identity must match its remote id, and IDr, when
// sent, its local id.
func pickConn(cands []*config.Connection, idi, idr *message.ID) *config.Connection {
	var loose *config.Connection
	for _, c := range cands {
		if !c.RemoteID.Matches(idi.IDType, idi.Data) {
			continue
		}
		if idr == nil || c.LocalID.Matches(idr.IDType, idr.Data) {
			return c
		}
		if loose == nil {
			loose = c
		}
	}
	return loose
}

// handleAuthRequest is the responder's side of IKE_AUTH.
func (sa *ikeSA) handleAuthRequest(m *message.Message, s *sock, local, remote netip.AddrPort) {
	fail := func(why string) {
		sa.respond(m, []message.Payload{&message.Notify{NotifyType: message.AUTHENTICATION_FAILED}}, s, local, remote)
		sa.destroy("authentication failed: " + why)
	}
	idi, _ := m.Find(message.PayloadIDi).(*message.ID)
	idr, _ := m.Find(message.PayloadIDr).(*message.ID)
	auth, _ := m.Find(message.PayloadAUTH).(*message.Auth)
	if idi == nil || auth == nil {
		fail("IKE_AUTH request without IDi or AUTH (EAP is not supported)")
		return
	}
	conn := pickConn(sa.cands, idi, idr)
	if conn == nil {
		fail(fmt.Sprintf("no connection accepts peer identity %s", idi))
		return
	}
	sa.conn = conn
	sa.setLogger()
	if auth.Method != message.AuthSharedKeyMIC {
		fail(fmt.Sprintf("peer %s uses %v; connection %s expects a pre-shared key", idi, auth.Method, conn.Name))
		return
	}
	if !sa.verifyPeerAuth(conn.PSK, idi, auth) {
		fail(fmt.Sprintf("peer %s's AUTH does not verify with the pre-shared key of connection %s", idi, conn.Name))
		return
	}
	myID := idPayload(conn.LocalID, true)
	mine, err := sa.pskAuth(conn.PSK, myID)
	if err != nil {
		fail(err.Error())
		return
	}
	sa.halfOpenTimer.Stop()
	delete(sa.e.initIndex, initKey{sa.spii, remote})
	sa.estAt = sa.e.clk.Now()
	sa.setState(ikeEstablished, "authenticated "+idi.String())
	ps := []message.Payload{myID, &message.Auth{Method: message.AuthSharedKeyMIC, Data: mine}}
	ps = append(ps, sa.acceptChild(m, conn.Children, sa.ni, sa.nr, nil, nil)...)
	sa.respond(m, ps, s, local, remote)
	sa.armLiveness()
	sa.armIKERekey()
}

// acceptChild is the responder's child negotiation (IKE_AUTH and
// CREATE_CHILD_SA): choose a child configuration whose selectors and ESP
// proposals fit, narrow, allocate, install; it returns the payloads of
// the answer, or an error notify that says why not.
//
// ke is the initiator's KE payload of a CREATE_CHILD_SA with PFS (nil
// otherwise); the answer then carries ours. old, for a rekey, is the
// child being replaced: the new one keeps its selectors.
func (sa *ikeSA) acceptChild(m *message.Message, children []*config.Child, ni, nr []byte, ke *message.KE, old *childSA) []message.Payload {
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	tsi, _ := m.Find(message.PayloadTSi).(*message.TS)
	tsr, _ := m.Find(message.PayloadTSr).(*message.TS)
	if sap == nil && tsi == nil && tsr == nil {
		return nil // childless
	}
	refuse := func(n message.NotifyType, why string) []message.Payload {
		sa.log.Warn("refusing the peer's child", "notify", n.String(), "reason", why)
		sa.e.publish(Event{Kind: "child", State: "refused", Reason: n.String() + ": " + why, SPIs: sa.spis(), Name: sa.name()})
		return []message.Payload{&message.Notify{NotifyType: n}}
	}
	if sap == nil || tsi == nil || tsr == nil {
		return refuse(message.INVALID_SYNTAX, "SA, TSi and TSr must come together")
	}
	transport := m.Notify(message.USE_TRANSPORT_MODE) != nil
	theirI, theirR := rangesOf(tsi), rangesOf(tsr)
	localAddr, remoteAddr := sa.local.Addr(), sa.remote.Addr()
	var (
		cc             *config.Child
		chosen         message.Proposal
		lts, rts       []tsRange
		propWhy, tsWhy string
	)
	for _, c := range children {
		ourL, ourR := configRanges(c.LocalTS, localAddr), configRanges(c.RemoteTS, remoteAddr)
		if old != nil {
			ourL, ourR = old.localTS, old.remoteTS
		}
		l := narrow(theirR, ourL)
		r := narrow(theirI, ourR)
		if len(l) == 0 || len(r) == 0 {
			tsWhy += fmt.Sprintf("; child %s has local %s remote %s", c.Name,
				rangesString(configRanges(c.LocalTS, localAddr)), rangesString(configRanges(c.RemoteTS, remoteAddr)))
			continue
		}
		if c.Mode == kernelops.ModeTransport && !transport {
			tsWhy += fmt.Sprintf("; child %s is transport mode, the peer asked for tunnel", c.Name)
			continue
		}
		p, ok, why := chooseESP(c.ESPProposals, sap.Proposals, ke != nil)
		if !ok {
			propWhy += fmt.Sprintf("; child %s: %s", c.Name, why)
			continue
		}
		cc, chosen, lts, rts = c, p, l, r
		break
	}
	if cc == nil {
		if propWhy != "" {
			return refuse(message.NO_PROPOSAL_CHOSEN, propWhy[2:])
		}
		return refuse(message.TS_UNACCEPTABLE, fmt.Sprintf("peer proposed TSi %s TSr %s%s", rangesString(theirI), rangesString(theirR), tsWhy))
	}
	var peerSPI []byte
	for _, p := range sap.Proposals {
		if p.Num == chosen.Num && p.Protocol == message.ProtocolESP {
			peerSPI = p.SPI
		}
	}
	ch := &childSA{e: sa.e, cfg: cc, ike: sa, state: childNegotiating, reqid: sa.e.reqidOf(cc), mode: cc.Mode,
		localAddr: localAddr, remoteAddr: remoteAddr, localTS: lts, remoteTS: rts, outSPI: spiFrom(peerSPI)}
	suite, err := ikecrypto.ChildSuiteFromProposal(&chosen)
	if err != nil || ch.outSPI == 0 {
		return refuse(message.NO_PROPOSAL_CHOSEN, fmt.Sprintf("chosen proposal unusable (SPI %x): %v", peerSPI, err))
	}
	ch.suite = suite
	var gir ikecrypto.Key
	var ourKE *message.KE
	if ke != nil {
		if ke.Group != suite.DH {
			sa.log.Info("CREATE_CHILD_SA: asking for another key exchange method (INVALID_KE_PAYLOAD)", "sent", ke.Group.String(), "want", suite.DH.String())
			return []message.Payload{&message.Notify{NotifyType: message.INVALID_KE_PAYLOAD, Data: []byte{byte(suite.DH >> 8), byte(suite.DH)}}}
		}
		dh, err := ikecrypto.NewDH(suite.DH)
		if err != nil {
			return refuse(message.NO_PROPOSAL_CHOSEN, err.Error())
		}
		if gir, err = dh.SharedSecret(ke.Data); err != nil {
			return refuse(message.INVALID_SYNTAX, "KE: "+err.Error())
		}
		defer gir.Zero()
		ourKE = &message.KE{Group: suite.DH, Data: dh.PublicValue()}
	}
	if err := sa.e.allocSPI(ch); err != nil {
		ch.fail(err.Error())
		return refuse(message.TEMPORARY_FAILURE, err.Error())
	}
	if err := sa.finishChild(ch, ni, nr, gir); err != nil {
		ch.fail(err.Error())
		return refuse(message.TEMPORARY_FAILURE, err.Error())
	}
	chosen.SPI = spiBytes(ch.inSPI)
	var ps []message.Payload
	if ch.mode == kernelops.ModeTransport {
		ps = append(ps, &message.Notify{NotifyType: message.USE_TRANSPORT_MODE})
	}
	ps = append(ps, &message.SA{Proposals: []message.Proposal{chosen}})
	if m.Exchange == message.CREATE_CHILD_SA {
		ps = append(ps, &message.Nonce{Data: nr})
		if ourKE != nil {
			ps = append(ps, ourKE)
		}
	}
	return append(ps, messageTS(rts, false), messageTS(lts, true))
}
