package ike

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// rekeyJitter spreads the rekeys of both ends of a child, whose soft
// lifetimes fire at about the same time, to make collisions rare.
const rekeyJitter = 2 * time.Second

// scheduleRekey rekeys the child after a random part of rekeyJitter, on
// the IKE SA that holds it then (an IKE rekey may have moved it).
func (e *Engine) scheduleRekey(ch *childSA) {
	e.after(randUpTo(rekeyJitter), func() { ch.ike.rekeyChild(ch) })
}

// createChild negotiates an additional child on an established IKE SA
// (CREATE_CHILD_SA without REKEY_SA).
func (sa *ikeSA) createChild(ch *childSA) {
	if sa.deferIKE(func(n *ikeSA) { n.createChild(ch) }) {
		return
	}
	ch.ike = sa
	ch.localAddr, ch.remoteAddr = sa.local.Addr(), sa.remote.Addr()
	ch.localTS = configRanges(ch.cfg.LocalTS, ch.localAddr)
	ch.remoteTS = configRanges(ch.cfg.RemoteTS, ch.remoteAddr)
	if a := ch.acquire; a != nil && a.Packet.Src.IsValid() && a.Packet.Dst.IsValid() {
		ch.localTS = append([]tsRange{hostRange(a.Packet.Src.Addr(), a.Packet.Proto, a.Packet.SrcPort)}, ch.localTS...)
		ch.remoteTS = append([]tsRange{hostRange(a.Packet.Dst.Addr(), a.Packet.Proto, a.Packet.DstPort)}, ch.remoteTS...)
	}
	sa.negotiateChild(ch, nil)
}

// negotiateChild sends the CREATE_CHILD_SA request for ch, a new child or
// (old set) the replacement of old.
func (sa *ikeSA) negotiateChild(nc *childSA, old *childSA) {
	if err := sa.e.allocSPI(nc); err != nil {
		nc.fail("cannot allocate an SPI: " + err.Error())
		if old != nil {
			old.rekeying = false
		}
		return
	}
	ni := make([]byte, 32)
	rand.Read(ni)
	var dh *ikecrypto.DH
	pfs := len(nc.cfg.ESPProposals[0].DH) > 0
	if pfs {
		var err error
		if dh, err = ikecrypto.NewDH(nc.cfg.ESPProposals[0].DH[0]); err != nil {
			nc.fail(err.Error())
			if old != nil {
				old.rekeying = false
			}
			return
		}
	}
	var ps []message.Payload
	if old != nil {
		ps = append(ps, &message.Notify{Protocol: message.ProtocolESP, SPI: spiBytes(old.inSPI), NotifyType: message.REKEY_SA})
	}
	if nc.mode == kernelops.ModeTransport {
		ps = append(ps, &message.Notify{NotifyType: message.USE_TRANSPORT_MODE})
	}
	ps = append(ps, espProposals(nc.cfg.ESPProposals, nc.inSPI, pfs), &message.Nonce{Data: ni})
	if dh != nil {
		ps = append(ps, &message.KE{Group: dh.Group(), Data: dh.PublicValue()})
	}
	ps = append(ps, messageTS(nc.localTS, false), messageTS(nc.remoteTS, true))
	sa.children = append(sa.children, nc)
	sa.send(&request{exch: message.CREATE_CHILD_SA, payloads: ps,
		onResponse: func(m *message.Message) {
			sa.dropChild(nc)
			if old != nil {
				old.rekeying = false
			}
			nonce, _ := m.Find(message.PayloadNonce).(*message.Nonce)
			var gir ikecrypto.Key
			if dh != nil {
				ke, _ := m.Find(message.PayloadKE).(*message.KE)
				if ke != nil && nonce != nil {
					var err error
					if gir, err = dh.SharedSecret(ke.Data); err != nil {
						nc.fail("peer's KE: " + err.Error())
						return
					}
					defer gir.Zero()
				}
			}
			if nonce == nil && m.Find(message.PayloadSA) != nil {
				nc.fail("CREATE_CHILD_SA answer without a nonce")
				return
			}
			var nr []byte
			if nonce != nil {
				nr = nonce.Data
			}
			sa.completeChild(nc, m, ni, nr, gir)
			if nc.state == childInstalled && old != nil {
				sa.deleteChild(old, "rekeyed")
			}
		},
		onTimeout: func() { sa.destroy("peer not responding to CREATE_CHILD_SA") },
		onDrop: func(why string) {
			sa.dropChild(nc)
			nc.fail("link down: " + why)
			if old != nil {
				old.rekeying = false
			}
		}})
}

// rekeyChild replaces an installed child by a new one with fresh keys
// (CREATE_CHILD_SA with REKEY_SA, RFC 7296 §2.8), then deletes the old.
func (sa *ikeSA) rekeyChild(old *childSA) {
	if old.state != childInstalled || old.rekeying || sa.state != ikeEstablished {
		return
	}
	if sa.deferIKE(func(n *ikeSA) { n.rekeyChild(old) }) {
		return
	}
	if sa.quiet() {
		// Never into a dead link: the revival starts it (old.rekey).
		old.rekey = true
		old.logger().Debug("link down: rekey deferred until the link returns")
		return
	}
	old.rekeying = true
	nc := &childSA{e: sa.e, cfg: old.cfg, ike: sa, state: childNegotiating, reqid: old.reqid, mode: old.mode,
		localAddr: old.localAddr, remoteAddr: old.remoteAddr, localTS: old.localTS, remoteTS: old.remoteTS}
	old.logger().Info("rekeying child", "pfs", len(old.cfg.ESPProposals[0].DH) > 0)
	sa.negotiateChild(nc, old)
}

// handleCreateChild answers CREATE_CHILD_SA: a rekey of the IKE SA (an
// IKE proposal, rekey_ike.go), a child rekey (REKEY_SA) or a new child.
func (sa *ikeSA) handleCreateChild(m *message.Message, s *sock, local, remote netip.AddrPort) {
	answer := func(ps ...message.Payload) { sa.respond(m, ps, s, local, remote) }
	if sap, _ := m.Find(message.PayloadSA).(*message.SA); sap != nil && len(sap.Proposals) > 0 && sap.Proposals[0].Protocol == message.ProtocolIKE {
		sa.handleIKERekey(m, sap, answer)
		return
	}
	var old *childSA
	for _, n := range m.Notifies() {
		if n.NotifyType == message.REKEY_SA && n.Protocol == message.ProtocolESP {
			old = sa.childBySPI(spiFrom(n.SPI), true)
			if old == nil || old.state != childInstalled {
				sa.log.Info("peer rekeys a child we do not have", "spi", fmt.Sprintf("%x", n.SPI))
				answer(&message.Notify{Protocol: message.ProtocolESP, SPI: n.SPI, NotifyType: message.CHILD_SA_NOT_FOUND})
				return
			}
		}
	}
	nonce, _ := m.Find(message.PayloadNonce).(*message.Nonce)
	if nonce == nil {
		answer(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	nr := make([]byte, 32)
	rand.Read(nr)
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	children := sa.conn.Children
	if old != nil {
		children = children[:0:0]
		children = append(children, old.cfg)
		old.logger().Info("peer rekeys the child")
	}
	answer(sa.acceptChild(m, children, nonce.Data, nr, ke, old)...)
}
