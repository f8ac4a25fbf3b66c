package ike

import (
	"errors"
	"net/netip"

	"github.com/keyplane/keyplane/ike/message"
)

// handleDatagram decodes an IKE datagram and hands it to its SA. Runs on
// the loop.
func (e *Engine) handleDatagram(s *sock, b []byte, local, remote netip.AddrPort) {
	m, err := message.Parse(b)
	if err != nil {
		e.log.Debug("dropping malformed IKE datagram", "from", remote, "err", err)
		return
	}
	h := m.Header
	if h.Exchange == message.IKE_SA_INIT && !h.Response {
		if h.SPIr != 0 || !h.Initiator {
			e.log.Debug("dropping IKE_SA_INIT request with a responder SPI", "from", remote)
			return
		}
		e.handleInitRequest(s, m, local, remote)
		return
	}
	// Our SPI is the responder's when the sender is the original
	// initiator (I flag), else the initiator's.
	spi := h.SPIi
	if h.Initiator {
		spi = h.SPIr
	}
	sa := e.sas[spi]
	if sa == nil || sa.state == ikeDead || sa.spii != h.SPIi || (sa.spir != h.SPIr && !(sa.state == ikeInitSent && h.Exchange == message.IKE_SA_INIT)) {
		e.unknownSPI(s, m, local, remote)
		return
	}
	if h.Initiator == sa.initiator {
		e.log.Debug("dropping message with our own role's I flag", "from", remote, "message", logText{m})
		return
	}
	if h.Exchange == message.IKE_SA_INIT {
		if sa.state == ikeInitSent && sa.w.expects(0, message.IKE_SA_INIT) {
			sa.handleInitResponse(m, local, remote)
		}
		return
	}
	if sa.out == nil {
		return
	}
	if sa.keComputing {
		// A request of this SA is on a worker (ke_offload.go): what
		// follows it waits, to be handled in the order it came.
		sa.holdWhileComputing(s, m, local, remote)
		return
	}
	sa.receive(s, m, local, remote)
}

// receive handles an encrypted message (or fragment) for sa. Runs on the
// loop.
func (sa *ikeSA) receive(s *sock, m *message.Message, local, remote netip.AddrPort) {
	e, h := sa.e, m.Header
	if m.Find(message.PayloadSKF) != nil {
		// RFC 7383: collected, then handled as one message.
		if m = sa.reassemble(s, m, local, remote); m == nil {
			return
		}
	}
	if h.Response {
		if !sa.w.expects(h.MessageID, h.Exchange) {
			sa.logger().Debug("dropping unexpected response", "message", logText{m})
			return
		}
		if m.Find(message.PayloadSK) == nil && m.Notify(message.INVALID_IKE_SPI) != nil {
			sa.peerForgotSA(remote)
			return
		}
		if w := sa.authRun(); w != nil && w.computing {
			// A copy of the IKE_AUTH response on a worker
			// (auth_offload.go).
			e.crypto.authAgain++
			return
		}
		if h.Exchange == message.IKE_AUTH && sa.state == ikeAuthSent && sa.initiator {
			sa.offloadAuthResponse(m, remote) // decrypted and checked on a worker
			return
		}
		if r := sa.w.inflight; r.kex != nil { // expects: in flight, this message's
			sa.offloadResponseKE(m, r.kex, remote) // decrypted and its KE taken on a worker
			return
		}
		if err := m.Decrypt(sa.in); err != nil {
			sa.logger().Debug("dropping response that fails to decrypt", "err", err)
			return
		}
		sa.takeResponse(m, remote)
		return
	}
	// A request from the peer.
	switch sa.w.classify(h.MessageID) {
	case reqNew:
	case reqRetransmit:
		// A retransmission: answer again, unchanged (RFC 7296 §2.1), once
		// it proves to be the peer's (it decrypts).
		if sa.isRetransmit(m) {
			sa.logger().Debug("answering retransmitted request", "msgid", h.MessageID)
			sa.sendResponse(s, local, remote)
		}
		return
	default:
		sa.logger().Debug("dropping request outside the window", "msgid", h.MessageID, "expected", sa.w.peerNext)
		return
	}
	if w := sa.authRun(); w != nil && w.computing {
		// Its IKE_AUTH request is on a worker (auth_offload.go): this is
		// a copy of it, or a request that cannot come before its answer.
		e.crypto.authAgain++
		sa.logger().Debug("request while the IKE_AUTH request is computed; dropped", "msgid", h.MessageID)
		return
	}
	if h.Exchange == message.IKE_AUTH && sa.state == ikeHalfOpen && !sa.initiator {
		sa.offloadAuth(m, s, local, remote) // decrypted and checked on a worker
		return
	}
	if keOffloaded(h) {
		sa.offloadRequestKE(m, s, local, remote) // decrypted and its KE answered on a worker
		return
	}
	if err := m.Decrypt(sa.in); err != nil {
		sa.requestUndecryptable(m, err, s, local, remote)
		return
	}
	sa.handleRequest(m, s, local, remote)
}

// requestUndecryptable answers a request that authenticated but is
// malformed inside with INVALID_SYNTAX (RFC 7296 §2.21.2) and drops any
// other that fails to decrypt.
func (sa *ikeSA) requestUndecryptable(m *message.Message, err error, s *sock, local, remote netip.AddrPort) {
	var pe *message.ParseError
	if errors.As(err, &pe) && !errors.Is(err, message.ErrIntegrity) && m.Header.Exchange != message.IKE_AUTH {
		sa.respond(m, []message.Payload{&message.Notify{NotifyType: message.INVALID_SYNTAX}}, s, local, remote)
		return
	}
	sa.logger().Debug("dropping request that fails to decrypt", "err", err)
}

// handleRequest handles the peer's new request m, decrypted.
func (sa *ikeSA) handleRequest(m *message.Message, s *sock, local, remote netip.AddrPort) {
	e, h := sa.e, m.Header
	sa.logger().Debug("received request", "message", logText{m}, "from", remote)
	sa.lastHeard = e.nowStamp()
	// The peer may have moved (NAT-T float, NAT mapping change): natmove.go.
	if !sa.mobikeRequest(m) { // MOBIKE's UPDATE_SA_ADDRESSES moves by its own rules (mobike.go)
		sa.peerSeenAt(s, local, remote)
	}
	switch h.Exchange {
	case message.IKE_AUTH:
		if sa.state == ikeHalfOpen && !sa.initiator {
			sa.handleAuthRequest(m, s, local, remote)
			return
		}
	case message.IKE_INTERMEDIATE:
		if sa.state == ikeHalfOpen && !sa.initiator {
			sa.handleIntermediate(m, s, local, remote)
			return
		}
	case message.IKE_FOLLOWUP_KE:
		if sa.state == ikeEstablished {
			sa.handleFollowupKE(m, s, local, remote)
			return
		}
	case message.INFORMATIONAL:
		if sa.state == ikeEstablished || sa.state == ikeDeleting || sa.state == ikeRekeyed || sa.state == ikeRedundant {
			sa.handleInformational(m, s, local, remote)
			return
		}
	case message.CREATE_CHILD_SA:
		switch {
		case sa.state == ikeEstablished && sa.pendingOf == nil:
			sa.handleCreateChild(m, s, local, remote)
			return
		case sa.state == ikeEstablished, sa.state == ikeDeleting, sa.state == ikeRekeyed, sa.state == ikeRedundant:
			// RFC 7296 §2.25: the SA is being deleted or replaced (or,
			// pendingOf, not yet settled as the replacement): the peer
			// tries again later, on the SA that survives.
			sa.logger().Info("CREATE_CHILD_SA while the IKE SA is "+sa.stateText()+": answering TEMPORARY_FAILURE", "msgid", h.MessageID)
			sa.respond(m, []message.Payload{&message.Notify{NotifyType: message.TEMPORARY_FAILURE}}, s, local, remote)
			return
		}
	}
	sa.logger().Debug("dropping request in this state", "message", logText{m}, "state", sa.state)
}

// takeResponse hands a decrypted answer to our request in flight to its
// handler: the peer was heard.
func (sa *ikeSA) takeResponse(m *message.Message, remote netip.AddrPort) {
	sa.logger().Debug("received response", "message", logText{m}, "from", remote)
	sa.lastHeard = sa.e.nowStamp()
	sa.answered(m)
}
