package ike

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// MOBIKE (RFC 4555). Both ends announce MOBIKE_SUPPORTED in IKE_AUTH
// (mobike = yes); it is active on an IKE SA only when both did. The
// initiator then moves to the NAT-T ports already for IKE_AUTH (§3.2),
// NAT or not.
//
// Only the initiator decides on moves (§3.4). When the local address of
// its IKE SA goes away (links.go sees the address or link event) and the
// dataplane routes the peer from another address of ours (AddrSelector),
// the SA sends from that address at once and asks the peer to follow: an
// INFORMATIONAL with UPDATE_SA_ADDRESSES, NAT detection for the new
// addresses and a COOKIE2 the answer must echo (§3.5, return
// routability). On that answer the children's SAs and policies move
// (Migrator; a dataplane without it rekeys them, as natmove.go does: the
// new SAs and the policies' templates take the IKE SA's addresses) with
// UDP encapsulation as the answer's NAT detection says. With no other
// address the SA is suspended as without MOBIKE, and moves as soon as an
// address appears that routes to the peer, instead of waiting for its own.
//
// The responder follows an authenticated UPDATE_SA_ADDRESSES in its
// window: the IKE SA and its children take the addresses the request came
// from and to, and the answer leaves from there. An UPDATE older than the
// latest one followed is answered but moves nothing (§3.5).
//
// NO_NATS_ALLOWED (§3.9) is never sent: the RFC asks for it only when NAT
// traversal is not enabled, and keyplane always does NAT-T (as charon
// does). Received in an UPDATE_SA_ADDRESSES, it must name the addresses
// the request arrived with; otherwise the answer is UNEXPECTED_NAT_DETECTED
// and nothing moves. An UNEXPECTED_NAT_DETECTED (or any error) answering
// our UPDATE leaves the children where they are.
//
// Not implemented: ADDITIONAL_IP*_ADDRESS lists (the responder has one
// address), and a responder moving itself.

// mobikeState is an IKE SA's MOBIKE standing.
type mobikeState struct {
	sent   bool // we announced MOBIKE_SUPPORTED
	active bool // both did
	// mover: we initiated the first IKE SA, so we are the one that
	// moves (RFC 4555 §3.4's initiator); an IKE rekey keeps the roles.
	mover bool
	// updating: our UPDATE_SA_ADDRESSES is queued or in flight.
	updating bool
	// lastUpdate is the message ID of the peer's latest UPDATE we
	// followed (valid when followed).
	lastUpdate uint32
	followed   bool
}

// cookie2Len is the size of our COOKIE2 (RFC 4555 §3.6 allows 8–64).
const cookie2Len = 16

// mobikeAnnounce is the initiator's MOBIKE_SUPPORTED for IKE_AUTH.
func (sa *ikeSA) mobikeAnnounce() []message.Payload {
	if !sa.conn.MOBIKE {
		return nil
	}
	sa.mob.sent = true
	return []message.Payload{&message.Notify{NotifyType: message.MOBIKE_SUPPORTED}}
}

// mobikeAnswered takes the responder's IKE_AUTH answer.
func (sa *ikeSA) mobikeAnswered(m *message.Message) {
	sa.mob.active = sa.mob.sent && m.Notify(message.MOBIKE_SUPPORTED) != nil
	sa.mob.mover = true
	if sa.mob.sent {
		sa.logger().Debug("MOBIKE", "active", sa.mob.active)
	}
}

// mobikeAnswer is the responder's MOBIKE_SUPPORTED for the IKE_AUTH
// request m, when its connection allows MOBIKE and the initiator asked.
func (sa *ikeSA) mobikeAnswer(m *message.Message) []message.Payload {
	if !sa.conn.MOBIKE || m.Notify(message.MOBIKE_SUPPORTED) == nil {
		return nil
	}
	sa.mob.sent, sa.mob.active = true, true
	sa.logger().Debug("MOBIKE", "active", true)
	return []message.Payload{&message.Notify{NotifyType: message.MOBIKE_SUPPORTED}}
}

// inherited is the MOBIKE state of an IKE SA that replaces this one in a
// rekey: negotiated once, for the first IKE SA.
func (m mobikeState) inherited() mobikeState {
	return mobikeState{sent: m.sent, active: m.active, mover: m.mover}
}

// routeMemo is the dataplane's source towards each peer address asked
// for during one pass over the SAs (relink, routesChanged): when a link
// with thousands of SAs to a few peers goes, one RouteTo per peer, not
// per SA. Routes do not change during a pass (it runs on the loop).
type routeMemo map[netip.Addr]netip.Addr

// mobikeSource is our address towards remote by the dataplane's routes,
// from memo if it has the answer (nil: no memo).
func (e *Engine) mobikeSource(memo routeMemo, remote netip.Addr) netip.Addr {
	if src, ok := memo[remote]; ok {
		return src
	}
	var src netip.Addr
	if as, err := kernelops.As[kernelops.AddrSelector](e.b); err == nil {
		if r, err := as.RouteTo(e.ctx, remote); err == nil {
			src = r.Src.Unmap().WithZone("")
		}
	}
	if memo != nil {
		memo[remote] = src
	}
	return src
}

// mobikeMove is links.go's question for an IKE SA whose local address is
// gone or down: can MOBIKE move it to another address? If so it moves
// the SA there, sends UPDATE_SA_ADDRESSES and reports true. memo holds
// the pass's route answers (nil: none).
func (sa *ikeSA) mobikeMove(idx map[netip.Addr]addrSite, memo routeMemo) bool {
	if !sa.mob.active || !sa.mob.mover || sa.state != ikeEstablished || sa.sock == nil {
		return false
	}
	if b := sa.sock.bound.Addr(); b.IsValid() && !b.IsUnspecified() {
		return false // the socket is bound to the old address: no other source
	}
	old := sa.local
	src := sa.e.mobikeSource(memo, sa.remote.Addr())
	site, known := idx[src]
	if !src.IsValid() || src == old.Addr().Unmap().WithZone("") || !known || !site.up {
		return false
	}
	sa.local = netip.AddrPortFrom(src, old.Port())
	sa.e.changed(sa) // changes.go
	sa.ifIndex = int32(site.index)
	sa.logger().Info("MOBIKE: local address gone; moving to another address", "from", old, "to", sa.local, "link", sa.e.ifs[site.index].name)
	sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "mobike-move", SPIs: sa.eventSPIs(),
		Detail: fmt.Sprintf("local %s -> %s", old, sa.local)})
	if !sa.mob.updating {
		sa.mob.updating = true
		r := sa.updateRequest()
		if sa.w.inflight != nil || sa.link != linkOK {
			// First after the exchange in flight (which goes on from the
			// new address).
			sa.w.queue = append([]*request{r}, sa.w.queue...)
		} else {
			sa.send(r)
		}
	}
	if sa.link != linkOK {
		sa.revive() // suspended: out of it, with the UPDATE (or the request in flight) first
	}
	return true
}

// updateRequest is the initiator's UPDATE_SA_ADDRESSES for the SA's
// current addresses.
func (sa *ikeSA) updateRequest() *request {
	cookie := make([]byte, cookie2Len)
	rand.Read(cookie)
	local := sa.local
	ps := []message.Payload{&message.Notify{NotifyType: message.UPDATE_SA_ADDRESSES}}
	ps = append(ps, natNotifies(sa.spii, sa.spir, local, sa.remote, sa.conn.Encap)...)
	ps = append(ps, &message.Notify{NotifyType: message.COOKIE2, Data: cookie})
	sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "mobike-update", SPIs: sa.eventSPIs(),
		Detail: fmt.Sprintf("UPDATE_SA_ADDRESSES from %s to %s", local, sa.remote)})
	return &request{exch: message.INFORMATIONAL, payloads: ps,
		onResponse: func(m *message.Message) { sa.updateAnswered(m, cookie, local) },
		onTimeout:  func() { sa.destroyErr(errPeerGone("peer not responding to UPDATE_SA_ADDRESSES")) },
		onDrop:     func(string) { sa.mob.updating = false }}
}

// errCookie2 is a COOKIE2 echo that does not match ours.
var errCookie2 = errors.New("MOBIKE: the answer to UPDATE_SA_ADDRESSES does not echo our COOKIE2")

// checkCookie2 verifies the peer's echo of our COOKIE2 (RFC 4555 §3.6).
func checkCookie2(m *message.Message, ours []byte) error {
	n := m.Notify(message.COOKIE2)
	if n == nil || !bytes.Equal(n.Data, ours) {
		return errCookie2
	}
	return nil
}

// updateAnswered is the initiator's end of UPDATE_SA_ADDRESSES sent from
// local.
func (sa *ikeSA) updateAnswered(m *message.Message, cookie []byte, local netip.AddrPort) {
	sa.mob.updating = false
	if sa.state == ikeDead {
		return
	}
	for n := range m.Notifies() {
		if n.NotifyType.IsError() {
			sa.logger().Warn("MOBIKE: peer refuses our UPDATE_SA_ADDRESSES; children stay where they are", "notify", n.NotifyType.String())
			sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "mobike-refused", SPIs: sa.eventSPIs(), Reason: n.NotifyType.String()})
			return
		}
	}
	if err := checkCookie2(m, cookie); err != nil {
		// An authenticated answer that fails return routability: the
		// children are not moved on its word.
		sa.logger().Warn("MOBIKE: "+err.Error()+"; children stay where they are", "local", local)
		sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "mobike-refused", SPIs: sa.eventSPIs(), Reason: "COOKIE2 mismatch"})
		return
	}
	if sa.local != local {
		// Moved again meanwhile: tell the peer the latest.
		sa.mob.updating = true
		sa.send(sa.updateRequest())
		return
	}
	sa.natLocal, sa.natRemote = detectNAT(m, sa.spii, sa.spir, sa.local, sa.remote)
	sa.e.changed(sa) // changes.go
	n := sa.mobikeMigrate()
	sa.logger().Info("MOBIKE: peer follows; children migrated", "local", sa.local, "remote", sa.remote, "children", n,
		"nat-local", sa.natLocal, "nat-remote", sa.natRemote)
	sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "moved", SPIs: sa.eventSPIs(),
		Detail: fmt.Sprintf("MOBIKE: local %s remote %s, %d children moved", sa.local, sa.remote, n)})
}

// mobikeMigrate moves the installed children to the IKE SA's addresses,
// encapsulated in UDP when a NAT is now seen; it returns how many moved.
func (sa *ikeSA) mobikeMigrate() int {
	n := 0
	l, r := sa.local.Addr(), sa.remote.Addr()
	for _, ch := range append([]*childSA(nil), sa.children...) {
		if ch.state != childInstalled {
			continue
		}
		var enc *kernelops.Encap
		if sa.natAny() {
			enc = &kernelops.Encap{SrcPort: sa.local.Port(), DstPort: sa.remote.Port()}
		}
		if l == ch.localAddr && r == ch.remoteAddr && sameEncap(enc, ch.encap) {
			continue
		}
		n++
		if err := sa.e.migrateChild(ch, l, r, enc); err != nil {
			ch.logger().Warn("MOBIKE: cannot migrate the child's SAs; rekeying it so that new SAs take the new addresses", "err", err)
			if ch.ours == nil && ch.theirs == nil {
				sa.rekeyChild(ch)
			}
			continue
		}
		ch.logger().Info("child moved (MOBIKE)", "local", l, "remote", r, "encap", enc != nil)
	}
	return n
}

// mobikeRequest reports whether m is an UPDATE_SA_ADDRESSES this SA acts
// on (MOBIKE active, we are not the mover): the NAT-following of
// natmove.go leaves such a request to mobikeUpdate.
func (sa *ikeSA) mobikeRequest(m *message.Message) bool {
	return sa.mob.active && !sa.mob.mover && m.Exchange == message.INFORMATIONAL && !m.Response &&
		m.Notify(message.UPDATE_SA_ADDRESSES) != nil
}

// mobikeEcho is what a MOBIKE peer's other INFORMATIONAL requests get
// back besides the usual answer: its COOKIE2 echoed (§3.6; charon sends
// one with the checks it makes after a move) and, when it sent NAT
// detection (a check of the NAT mappings, §3.8), ours for the addresses
// the request came on.
func (sa *ikeSA) mobikeEcho(m *message.Message, local, remote netip.AddrPort) []message.Payload {
	if !sa.mob.active {
		return nil
	}
	var ps []message.Payload
	if c := m.Notify(message.COOKIE2); c != nil {
		ps = append(ps, &message.Notify{NotifyType: message.COOKIE2, Data: c.Data})
	}
	if m.Notify(message.NAT_DETECTION_DESTINATION_IP) != nil {
		ps = append(ps, natNotifies(sa.spii, sa.spir, local, remote, sa.conn.Encap)...)
	}
	return ps
}

// newerMsgID reports whether a is after b in message ID order.
func newerMsgID(a, b uint32) bool { return int32(a-b) > 0 }

// mobikeUpdate is the responder's handling of an UPDATE_SA_ADDRESSES
// request (it reports false for any other request): follow the peer to
// the addresses the request came from and to, answer from there with
// NAT detection and the COOKIE2 echo.
func (sa *ikeSA) mobikeUpdate(m *message.Message, s *sock, local, remote netip.AddrPort) bool {
	if !sa.mobikeRequest(m) {
		return false
	}
	var ps []message.Payload
	if c := m.Notify(message.COOKIE2); c != nil {
		ps = append(ps, &message.Notify{NotifyType: message.COOKIE2, Data: c.Data})
	}
	if sa.mob.followed && !newerMsgID(m.MessageID, sa.mob.lastUpdate) {
		sa.logger().Info("MOBIKE: an UPDATE_SA_ADDRESSES older than the one followed; answering, not moving", "msgid", m.MessageID, "latest", sa.mob.lastUpdate)
		sa.respond(m, ps, s, local, remote)
		return true
	}
	if why := noNATsMismatch(m, local, remote); why != "" {
		// §3.9: the peer allows no NAT on its path, and the addresses
		// changed on the way (or its notify is malformed): refuse, move
		// nothing.
		sa.logger().Warn("MOBIKE: UPDATE_SA_ADDRESSES with NO_NATS_ALLOWED that does not match the addresses it arrived with; answering UNEXPECTED_NAT_DETECTED, not moving",
			"detail", why)
		sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "mobike-refused", SPIs: sa.eventSPIs(),
			Reason: message.UNEXPECTED_NAT_DETECTED.String()})
		sa.respond(m, append(ps, &message.Notify{NotifyType: message.UNEXPECTED_NAT_DETECTED}), s, local, remote)
		return true
	}
	sa.mob.lastUpdate, sa.mob.followed = m.MessageID, true
	natLocal, natRemote := detectNAT(m, sa.spii, sa.spir, local, remote)
	ps = append(ps, natNotifies(sa.spii, sa.spir, local, remote, sa.conn.Encap)...)
	from, fromLocal := sa.remote, sa.local
	movedLocal := local.Addr() != sa.local.Addr()
	sa.sock, sa.local, sa.remote = s, local, remote
	sa.natLocal, sa.natRemote = natLocal, natRemote
	sa.e.changed(sa) // changes.go
	if movedLocal {
		sa.e.placeSA(sa)
	}
	sa.respond(m, ps, s, local, remote)
	n := sa.mobikeMigrate()
	sa.logger().Info("MOBIKE: peer moved; following it", "from", from, "to", remote, "local", local, "children", n,
		"nat-local", natLocal, "nat-remote", natRemote)
	if from != remote || fromLocal != local || n > 0 {
		sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "moved", SPIs: sa.eventSPIs(),
			Detail: fmt.Sprintf("MOBIKE: peer %s -> %s, %d children moved", from, remote, n)})
	}
	return true
}
