package ike

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// maxInitRetries bounds COOKIE and INVALID_KE_PAYLOAD rounds.
const maxInitRetries = 4

// startIKE creates an initiator IKE SA for c and sends IKE_SA_INIT; the
// first child rides in IKE_AUTH.
func (e *Engine) startIKE(c *config.Connection, first *childSA) *ikeSA {
	s := e.sockets[listenAddr(c.LocalAddr, c.RemoteAddr, c.LocalPort)]
	remote := netip.AddrPortFrom(c.RemoteAddr, c.RemotePort)
	sa := &ikeSA{e: e, id: e.newIKEID(), conn: c, initiator: true, created: e.nowStamp(), sock: s,
		local:  netip.AddrPortFrom(e.sourceFor(c.LocalAddr, c.RemoteAddr), c.LocalPort),
		remote: remote, first: first}
	sa.spii = e.newSPI()
	hs := made(&sa.hs)
	hs.ni = make([]byte, 32)
	rand.Read(hs.ni)
	sa.setupWindow()
	e.addSA(sa.spii, sa)
	if first != nil {
		first.ike = sa
	}
	sa.timeHandshake = true
	sa.setState(ikeInitSent, "")
	e.placeSA(sa) // on a dead link the request waits for it
	sa.sendInit(c.Proposals[0].DH[0])
	return sa
}

func (sa *ikeSA) sendInit(group message.DHGroup) {
	// A COOKIE retry repeats the request unchanged but for the cookie
	// (RFC 7296 §2.6): same KE. A new group needs a new key.
	hs := made(&sa.hs)
	if hs.dh == nil || hs.dh.Method() != group {
		dh, err := ikecrypto.NewKeyExchange(group)
		if err != nil {
			sa.destroyErr(fmt.Errorf("key exchange %v: %w", group, err))
			return
		}
		hs.dh = dh
	}
	dh := hs.dh
	var ps []message.Payload
	if hs.cookie != nil {
		ps = append(ps, &message.Notify{NotifyType: message.COOKIE, Data: hs.cookie})
	}
	ps = append(ps, ikeProposals(sa.conn.Proposals), &message.KE{Group: group, Data: dh.PublicValue()},
		&message.Nonce{Data: hs.ni})
	ps = append(ps, natNotifies(sa.spii, 0, sa.local, sa.remote, sa.conn.Encap)...)
	ps = append(ps, sa.initNotifies()...)
	sa.send(&request{exch: message.IKE_SA_INIT, payloads: ps,
		onTimeout: func() { sa.destroyErr(errPeerGone("peer not responding to IKE_SA_INIT")) }})
}

// handleInitResponse is the initiator's side of IKE_SA_INIT.
func (sa *ikeSA) handleInitResponse(m *message.Message, local, remote netip.AddrPort) {
	hs := made(&sa.hs) // sendInit made it
	// retry sends IKE_SA_INIT again (message ID 0 again), a bounded
	// number of times.
	retry := func() bool {
		sa.w.abandon()
		hs.initRetries++
		if hs.initRetries > maxInitRetries {
			sa.destroyErr(errors.New("IKE_SA_INIT did not converge (too many COOKIE/INVALID_KE_PAYLOAD rounds)"))
			return false
		}
		return true
	}
	if n := m.Notify(message.COOKIE); n != nil && m.Find(message.PayloadSA) == nil {
		if !retry() {
			return
		}
		sa.logger().Info("responder demands a COOKIE; retrying IKE_SA_INIT with it")
		hs.cookie = append([]byte(nil), n.Data...)
		sa.sendInit(hs.dh.Method())
		return
	}
	if n := m.Notify(message.INVALID_KE_PAYLOAD); n != nil {
		sa.w.abandon()
		if len(n.Data) != 2 {
			sa.destroyErr(peerNotify(message.INVALID_KE_PAYLOAD, "without a group"))
			return
		}
		g := message.DHGroup(binary.BigEndian.Uint16(n.Data))
		if !offersGroup(sa.conn.Proposals, g) || g == hs.dh.Method() {
			sa.destroyErr(peerNotify(message.INVALID_KE_PAYLOAD, "responder asks for key exchange %v, which we did not propose", g))
			return
		}
		if !retry() {
			return
		}
		sa.logger().Info("responder asks for another key exchange method (INVALID_KE_PAYLOAD); retrying", "group", g.String())
		sa.sendInit(g)
		return
	}
	for n := range m.Notifies() {
		if n.NotifyType.IsError() {
			why := ""
			if n.NotifyType == message.NO_PROPOSAL_CHOSEN {
				why = "peer chose none of our IKE proposals: we offered " + proposalsText(sa.conn.Proposals)
			}
			sa.w.abandon()
			sa.destroyErr(peerNotify(n.NotifyType, "%s", why))
			return
		}
	}
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	nonce, _ := m.Find(message.PayloadNonce).(*message.Nonce)
	if sap == nil || ke == nil || nonce == nil || m.SPIr == 0 || len(sap.Proposals) != 1 {
		sa.logger().Debug("dropping incomplete IKE_SA_INIT response", "message", logText{m})
		return
	}
	sa.w.complete()
	chosen := &sap.Proposals[0]
	if err := acceptable(chosen, sa.conn.Proposals, message.ProtocolIKE, true); err != nil {
		sa.destroyErr(ourNotify(message.NO_PROPOSAL_CHOSEN, "responder's IKE proposal: %v", err))
		return
	}
	suite, err := ikecrypto.IKESuiteFromProposal(chosen)
	if err != nil {
		sa.destroyErr(ourNotify(message.NO_PROPOSAL_CHOSEN, "responder's IKE proposal: %v", err))
		return
	}
	if suite.DH != hs.dh.Method() || ke.Group != suite.DH {
		sa.destroyErr(ourNotify(message.INVALID_SYNTAX, "responder chose key exchange %v but sent %v (we sent %v)", suite.DH, ke.Group, hs.dh.Method()))
		return
	}
	sa.spir = m.SPIr
	sa.e.changed(sa) // changes.go
	hs.nr = append([]byte(nil), nonce.Data...)
	hs.initResp = append([]byte(nil), m.Raw()...)
	hs.ikeChosen = *chosen
	// The shared secret and the keys are computed on a worker (on the
	// loop when their queue is full: the response is taken, the
	// responder will not send it again). Meanwhile the SA stays in
	// ikeInitSent with no keys and no request outstanding: copies of
	// the response are dropped (receive.go) and nothing sends.
	j := initiatorJob{dh: hs.dh, peer: ke.Data, suite: suite, ni: hs.ni, nr: hs.nr, spii: sa.spii, spir: sa.spir}
	done := func(r initResult) { sa.initKeysReady(r, m, suite) }
	if !offload(sa.e, j.run, done) {
		done(j.run())
	}
}

// initiatorJob is what a worker needs for the initiator's keys: our key
// exchange (only the worker uses it until the result is back) and copies.
type initiatorJob struct {
	dh         ikecrypto.KeyExchange
	peer       []byte
	suite      ikecrypto.IKESuite
	ni, nr     []byte
	spii, spir uint64
}

// run computes on a worker. Pure but for dh, which it alone uses.
func (j initiatorJob) run() (r initResult) {
	gir, err := j.dh.SharedSecret(j.peer)
	if err != nil {
		r.keErr = err
		return r
	}
	defer gir.Zero()
	r.keys, r.out, r.in, r.err = deriveIKE(j.suite, gir, j.ni, j.nr, j.spii, j.spir, true)
	return r
}

// initKeysReady is the rest of handleInitResponse, on the loop once the
// keys are made, unless the SA ended meanwhile (it cannot go back to
// ikeInitSent, nor get keys otherwise).
func (sa *ikeSA) initKeysReady(r initResult, m *message.Message, suite ikecrypto.IKESuite) {
	if sa.state != ikeInitSent || sa.out != nil {
		return
	}
	if r.keErr != nil {
		sa.destroyErr(ourNotify(message.INVALID_SYNTAX, "responder's KE: %v", r.keErr))
		return
	}
	if r.err != nil {
		sa.destroyErr(r.err)
		return
	}
	sa.suite, sa.keys, sa.out, sa.in = suite, r.keys, r.out, r.in
	made(&sa.hs).dh = nil
	sa.natLocal, sa.natRemote = detectNAT(m, sa.spii, sa.spir, sa.local, sa.remote)
	sa.e.changed(sa) // changes.go
	sa.readInitAnswer(m)
	sa.logger().Info("IKE_SA_INIT done", "suite", logText{suite}, "nat-local", sa.natLocal, "nat-remote", sa.natRemote)
	if sa.natAny() || sa.conn.MOBIKE { // RFC 4555 §3.2: MOBIKE moves to the NAT-T ports in any case
		sa.floatToNATT()
	}
	sa.afterInit()
}

// deriveIKE makes an IKE SA's keys and ciphers from its shared secret.
// Pure: workers run it.
func deriveIKE(suite ikecrypto.IKESuite, gir ikecrypto.Key, ni, nr []byte, spii, spir uint64, initiator bool) (*ikecrypto.IKEKeys, message.Cipher, message.Cipher, error) {
	keys, err := ikecrypto.DeriveIKEKeys(suite, gir, ni, nr, spii, spir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("derive IKE keys: %w", err)
	}
	out, in, err := keys.HandshakeCiphers(initiator)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("IKE ciphers: %w", err)
	}
	return keys, out, in, nil
}

// floatToNATT moves the initiator to the NAT-T ports (RFC 7296 §2.23).
func (sa *ikeSA) floatToNATT() {
	if sa.sock.nat {
		return
	}
	ns := sa.e.natSock(sa.sock, sa.conn)
	if ns == nil {
		sa.logger().Warn("NAT detected but no NAT-T socket is open; staying on the IKE port")
		return
	}
	sa.sock = ns
	sa.local = netip.AddrPortFrom(sa.local.Addr(), ns.bound.Port())
	sa.remote = netip.AddrPortFrom(sa.remote.Addr(), sa.conn.RemoteNATPort)
	sa.e.changed(sa) // changes.go
	sa.logger().Info("floating to the NAT-T ports", "nat", sa.natAny(), "mobike", sa.conn.MOBIKE, "local", sa.local, "remote", sa.remote)
}

// candidates are the connections that may answer an IKE_SA_INIT from
// remote arriving at local on s, exact remote addresses first.
func (e *Engine) candidates(s *sock, local, remote netip.AddrPort) []*config.Connection {
	var exact, any []*config.Connection
	for _, c := range e.cfg.Connections {
		port := c.LocalPort
		if s.nat {
			port = c.LocalNATPort
		}
		if port != s.bound.Port() || (c.LocalAddr.IsValid() && c.LocalAddr != local.Addr()) {
			continue
		}
		switch {
		case c.RemoteAddr == remote.Addr():
			exact = append(exact, c)
		case !c.RemoteAddr.IsValid():
			any = append(any, c)
		}
	}
	return append(exact, any...)
}

// answerPlain sends an unencrypted IKE_SA_INIT answer (errors, COOKIE).
func (e *Engine) answerPlain(s *sock, req *message.Message, spir uint64, local, remote netip.AddrPort, ps ...message.Payload) []byte {
	m := &message.Message{Header: message.Header{SPIi: req.SPIi, SPIr: spir, Exchange: message.IKE_SA_INIT,
		Response: true, MessageID: 0}, Payloads: ps}
	b, err := m.Encode()
	if err != nil {
		e.log.Error("cannot encode IKE_SA_INIT answer", "err", err)
		return nil
	}
	e.sendTo(s, local, remote, b)
	return b
}

// handleInitRequest is the responder's side of IKE_SA_INIT.
func (e *Engine) handleInitRequest(s *sock, m *message.Message, local, remote netip.AddrPort) {
	if e.initSentAgain(s, m, local, remote) {
		return
	}
	if p := e.crypto.inits[initKeyOf(m.SPIi, remote.Addr())]; p != nil {
		// Its key exchange is being computed: the answer to the first
		// copy is on its way, nothing more to do for this one.
		e.crypto.inflightAgain++
		e.initLog(m.SPIi, remote).Debug("IKE_SA_INIT request again while its key exchange is computed; dropped", "from", remote)
		return
	}
	log := func() *slog.Logger { return e.initLog(m.SPIi, remote) } // made for a line only: most requests log none
	from := remote.Addr()
	cands := e.candidates(s, local, remote)
	if len(cands) == 0 {
		e.preLog(log(), from, slog.LevelWarn, "IKE_SA_INIT: no connection for these addresses; answering NO_PROPOSAL_CHOSEN", "local", local)
		e.answerPlain(s, m, 0, local, remote, &message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
		return
	}
	nonce, _ := m.Find(message.PayloadNonce).(*message.Nonce)
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	if nonce == nil || sap == nil || ke == nil {
		log().Debug("IKE_SA_INIT request lacks SA, KE or Nonce; dropped", "message", logText{m})
		return
	}
	if !e.admitInit(s, m, nonce.Data, local, remote) {
		return
	}
	conn := cands[0]
	chosen, ok, why := choose(conn.Proposals, peerIKEProposals(m, sap))
	if !ok {
		e.preLog(log(), from, slog.LevelWarn, "IKE_SA_INIT: answering NO_PROPOSAL_CHOSEN", "connection", conn.Name, "reason", why)
		e.answerPlain(s, m, 0, local, remote, &message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
		return
	}
	group := adoptKEGroup(&chosen, sap, conn.Proposals, ke.Group)
	if ke.Group != group {
		e.preLog(log(), from, slog.LevelInfo, "IKE_SA_INIT: asking for another key exchange method (INVALID_KE_PAYLOAD)", "sent", ke.Group.String(), "want", group.String())
		e.answerPlain(s, m, 0, local, remote, &message.Notify{NotifyType: message.INVALID_KE_PAYLOAD,
			Data: binary.BigEndian.AppendUint16(nil, uint16(group))})
		return
	}
	suite, err := ikecrypto.IKESuiteFromProposal(&chosen)
	if err != nil {
		e.preLog(log(), from, slog.LevelWarn, "IKE_SA_INIT: chosen proposal unusable", "err", err)
		e.answerPlain(s, m, 0, local, remote, &message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
		return
	}
	// The key exchange and the derivation run on a worker; the request
	// stays pending (counted against the half-open limits, its SPI
	// reserved) until the
	// result is back, and a retransmission meanwhile is dropped.
	key := initKeyOf(m.SPIi, remote.Addr())
	nr := make([]byte, 32)
	rand.Read(nr)
	pend := &pendingInit{spir: e.newSPI(), bucket: sourceBucket(from), cfg: e.cfg,
		s: s, m: m, local: local, remote: remote, cands: cands, chosen: chosen, suite: suite, group: group,
		ni: append([]byte(nil), nonce.Data...), nr: nr}
	job := initJob{suite: suite, group: group, ke: ke.Data, ni: pend.ni, nr: nr, spii: m.SPIi, spir: pend.spir}
	if !offload(e, job.run, func(r initResult) { e.initComputed(key, pend, r) }) {
		e.crypto.busy.Add(1)
		e.preLog(log(), from, slog.LevelWarn, "dropped IKE_SA_INIT: the crypto workers' queue is full", "queue", e.crypto.depth)
		return
	}
	e.crypto.inits[key] = pend
	e.reserved[pend.spir] = true
	e.crypto.pending.add(pend.bucket)
}

// initLog is the logger of a responder's IKE_SA_INIT request before it
// has an SA.
func (e *Engine) initLog(spii uint64, remote netip.AddrPort) *slog.Logger {
	return e.log.With("spii", hex64(spii), "remote", remote)
}

// pendingInit is a responder's IKE_SA_INIT request whose key exchange is
// being computed: what the loop decided before, for when it is done.
// Loop-owned.
type pendingInit struct {
	spir   uint64
	bucket netip.Addr
	cfg    *config.Config // a reload meanwhile drops the result

	s             *sock
	m             *message.Message
	local, remote netip.AddrPort
	cands         []*config.Connection
	chosen        message.Proposal
	suite         ikecrypto.IKESuite
	group         message.DHGroup
	ni, nr        []byte
}

// initJob is what a worker needs for a responder's IKE_SA_INIT: copies,
// nothing the loop changes.
type initJob struct {
	suite      ikecrypto.IKESuite
	group      message.DHGroup
	ke, ni, nr []byte
	spii, spir uint64
}

// initResult is what it computed: our KE data and the SA's keys; keErr:
// the peer's KE data was invalid; err: the keys could not be made.
type initResult struct {
	pub        []byte
	keys       *ikecrypto.IKEKeys
	out, in    message.Cipher
	keErr, err error
}

// run computes on a worker. Pure.
func (j initJob) run() (r initResult) {
	pub, gir, err := ikecrypto.Respond(j.group, j.ke)
	if err != nil {
		r.keErr = err
		return r
	}
	defer gir.Zero()
	r.pub = pub
	r.keys, r.out, r.in, r.err = deriveIKE(j.suite, gir, j.ni, j.nr, j.spii, j.spir, false)
	return r
}

// initComputed is the rest of handleInitRequest, on the loop once the
// worker is done: it makes the half-open SA and answers.
func (e *Engine) initComputed(key initKey, p *pendingInit, r initResult) {
	if e.crypto.inits[key] != p {
		return // not ours (cannot happen: nothing else removes it)
	}
	delete(e.crypto.inits, key)
	delete(e.reserved, p.spir)
	e.crypto.pending.remove(p.bucket)
	s, m, local, remote, from := p.s, p.m, p.local, p.remote, p.remote.Addr()
	log := func() *slog.Logger { return e.initLog(m.SPIi, remote) }
	if e.cfg != p.cfg {
		log().Debug("IKE_SA_INIT computed under a configuration since replaced; dropped (the peer retransmits)")
		return
	}
	if r.keErr != nil {
		e.preLog(log(), from, slog.LevelWarn, "IKE_SA_INIT: invalid KE payload; answering INVALID_SYNTAX", "err", r.keErr)
		e.answerPlain(s, m, 0, local, remote, &message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	if r.err != nil {
		log().Error("IKE_SA_INIT", "err", r.err)
		return
	}
	conn, chosen, suite, group, pub := p.cands[0], p.chosen, p.suite, p.group, r.pub
	sa := &ikeSA{e: e, id: e.newIKEID(), conn: conn, created: e.nowStamp(), sock: s, local: local, remote: remote,
		spii: m.SPIi, hs: &handshake{ni: p.ni, nr: p.nr, cands: p.cands, ikeChosen: chosen, initReq: append([]byte(nil), m.Raw()...)}}
	sa.spir = p.spir
	sa.suite, sa.keys, sa.out, sa.in = suite, r.keys, r.out, r.in
	sa.natLocal, sa.natRemote = detectNAT(m, sa.spii, 0, local, remote)
	ps := []message.Payload{&message.SA{Proposals: []message.Proposal{chosen}},
		&message.KE{Group: group, Data: pub}, &message.Nonce{Data: sa.hs.nr}}
	if m.Notify(message.NAT_DETECTION_SOURCE_IP) != nil {
		ps = append(ps, natNotifies(sa.spii, sa.spir, local, remote, conn.Encap)...)
	}
	ps = append(ps, sa.initAnswerNotifies(m)...)
	sa.setupWindow()
	sa.hs.initResp = e.answerPlain(s, m, sa.spir, local, remote, ps...)
	sa.w.peerNext = 1
	e.addSA(sa.spir, sa)
	sa.setState(ikeHalfOpen, "")
	e.placeSA(sa)
	if ok, other := e.preLogs(sa.logger(), from, slog.LevelInfo, "IKE_SA_INIT answered"); ok { // the arguments only when logged: this is every handshake
		e.preLogLine(sa.logger(), from, slog.LevelInfo, "IKE_SA_INIT answered", other, "suite", logText{suite}, "nat-local", sa.natLocal, "nat-remote", sa.natRemote)
	}
	sa.hs.halfOpenTimer = e.after(e.cfg.Daemon.HalfOpenTimeout, func() {
		if sa.state == ikeHalfOpen {
			sa.destroy("half-open: no IKE_AUTH within the timeout")
		}
	})
}
