package ike

import (
	"net/netip"

	"github.com/keyplane/keyplane/ike/message"
)

// handleInformational answers the peer's INFORMATIONAL request: deletes
// of the IKE SA or of children, an empty one (liveness), or an error
// notification.
func (sa *ikeSA) handleInformational(m *message.Message, s *sock, local, remote netip.AddrPort) {
	var answer []message.Payload
	var inSPIs []uint32
	var closed []*childSA // deleted by the peer, not by us: close_action
	ikeDelete := false
	if sa.mobikeUpdate(m, s, local, remote) { // mobike.go
		return
	}
	for _, p := range m.Payloads {
		switch x := p.(type) {
		case *message.Delete:
			switch x.Protocol {
			case message.ProtocolIKE:
				ikeDelete = true
			case message.ProtocolESP:
				for _, spi := range x.SPIs {
					ch := sa.childByOutSPI(spi)
					if ch == nil && sa.pendingOf != nil {
						// The children are still on the SA this one
						// replaces (an unsettled rekey collision).
						ch = sa.pendingOf.childByOutSPI(spi)
					}
					if ch == nil {
						sa.logger().Debug("peer deletes an unknown child", "spi", spi)
						continue
					}
					if ch.state != childDeleting {
						// Our own delete of it crossed this one (RFC 7296
						// §1.4.1): the peer needs no SPI back then.
						inSPIs = append(inSPIs, ch.inSPI)
						closed = append(closed, ch)
					}
					ch.remove("deleted by peer")
					ch.ike.dropChild(ch)
				}
			}
		case *message.Notify:
			if x.NotifyType == message.AUTHENTICATION_FAILED {
				sa.destroy("peer reports AUTHENTICATION_FAILED")
				return
			}
			if x.NotifyType.IsError() {
				sa.logger().Warn("peer reports an error", "notify", x.NotifyType.String())
			}
		}
	}
	if ikeDelete {
		sa.respond(m, nil, s, local, remote)
		sa.settleOnPeerDelete()
		reason := "deleted by peer"
		if sa.state == ikeRekeyed {
			reason = "deleted by peer after the rekey"
		}
		if sa.state == ikeEstablished {
			sa.rec.ending = endByPeer // close_action (recovery.go)
		}
		sa.destroy(reason)
		return
	}
	if len(inSPIs) > 0 {
		answer = append(answer, &message.Delete{Protocol: message.ProtocolESP, SPIs: inSPIs})
	}
	answer = append(answer, sa.mobikeEcho(m, local, remote)...)
	sa.respond(m, answer, s, local, remote)
	for _, ch := range closed {
		sa.e.childClosed(ch)
	}
}

// deleteChild tells the peer the child goes and removes it once answered.
func (sa *ikeSA) deleteChild(ch *childSA, reason string) {
	if ch.state != childInstalled {
		return
	}
	if sa.deferIKE(func(n *ikeSA) { n.deleteChild(ch, reason) }) {
		return
	}
	if sa.quiet() {
		sa.deleteHeld(ch, reason)
		return
	}
	ch.setState(childDeleting, reason)
	sa.send(&request{exch: message.INFORMATIONAL,
		payloads: []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{ch.inSPI}}},
		onResponse: func(*message.Message) {
			ch.remove(reason)
			ch.ike.dropChild(ch) // the SA that holds it now, after an IKE rekey
		},
		onTimeout: func() {
			sa.destroyErr(errPeerGone("peer not responding to our child delete"))
		}})
}
