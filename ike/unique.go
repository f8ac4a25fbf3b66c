package ike

import (
	"bytes"
	"fmt"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// Uniqueness (swanctl's unique) and INITIAL_CONTACT (RFC 7296 §3.10.1).
//
// INITIAL_CONTACT says "this is the only IKE SA between our two
// identities": sent in our IKE_AUTH request unless unique = never, when
// we have no other IKE SA with the peer (same local identity, an
// authenticated peer the connection's remote identity matches) — after a
// restart, or when a dead peer's SA was cleared. Received in either
// role, once the sender is authenticated and unless unique = never, it
// makes every other IKE SA with the same two identities go at once,
// without a delete (the peer has forgotten them), with their children:
// stale SAs do not linger until liveness checks find them. They go once
// the new SA's IKE_AUTH has installed its child, not before
// (dropForInitialContact).
//
// As responder, unique = replace deletes (telling the peer) the other
// established IKE SAs of the connection with the same identities once a
// new one is authenticated; unique = keep refuses the new one with
// AUTHENTICATION_FAILED while one exists (INITIAL_CONTACT overrides it:
// the peer says the old one is gone). keep therefore also refuses a
// peer's make-before-break reauthentication, as in strongSwan.

// sameIdentity reports whether two identities are the same, type and
// value.
func sameIdentity(a, b *message.ID) bool {
	return a != nil && b != nil && a.IDType == b.IDType && bytes.Equal(a.Data, b.Data)
}

// localID is our identity on the SA, as we present it.
func (sa *ikeSA) localID() *message.ID {
	if sa.conn == nil {
		return nil
	}
	return idPayload(sa.conn.LocalID, false)
}

// sameParties reports whether o joins the same two identities as sa
// (o authenticated, sa's peer authenticated as peer).
func (sa *ikeSA) sameParties(o *ikeSA, peer *message.ID) bool {
	return o != sa && o.state != ikeDead && o.conn != nil && sameIdentity(o.rec.peerID, peer) &&
		sameIdentity(o.localID(), sa.localID())
}

// initialContact is the INITIAL_CONTACT notify for our IKE_AUTH request,
// if it should carry one.
func (sa *ikeSA) initialContact() []message.Payload {
	c := sa.conn
	if c.Unique == config.UniqueNever {
		return nil
	}
	// Our identity is compared as the connections hold it (what localID
	// wraps), without making an ID per SA looked at: with every tunnel to
	// one peer, an IKE_AUTH looks at every SA (a bring-up of 5,000 spent
	// a tenth of its CPU here).
	other := func(o *ikeSA) bool {
		return o != sa && o.state != ikeDead && o.rec.peerID != nil && o.conn != nil &&
			o.conn.LocalID.Type == c.LocalID.Type && bytes.Equal(o.conn.LocalID.Data, c.LocalID.Data) &&
			c.RemoteID.Matches(o.rec.peerID.IDType, o.rec.peerID.Data)
	}
	// A pattern matching one identity (up to case, for names) finds its
	// SAs under its own key and ours; a wildcard or a DN (matched by its
	// parts) looks at every SA.
	if id := c.RemoteID; !id.Any && !id.Wildcard() && id.Type != message.IDDerASN1DN {
		for o := range sa.e.byPeer[partiesHash(id.Type, id.Data, c.LocalID)].all {
			if other(o) {
				return nil
			}
		}
	} else {
		for _, o := range sa.e.sas {
			if other(o) {
				return nil
			}
		}
	}
	sa.logger().Debug("no other IKE SA with this peer: sending INITIAL_CONTACT")
	return []message.Payload{&message.Notify{NotifyType: message.INITIAL_CONTACT}}
}

// peerAuthenticated runs once the peer of sa has proved it is id, in
// either role, before the SA is established: it records the identity
// and as responder applies unique. initialContact reports that m carries
// INITIAL_CONTACT and unique allows it: the caller then runs
// dropForInitialContact once this SA's first child is installed. An
// error means the policy refuses the new SA (unique = keep).
func (sa *ikeSA) peerAuthenticated(m *message.Message, id *message.ID) (initialContact bool, err error) {
	e := sa.e
	peer := &message.ID{IDType: id.IDType, Data: bytes.Clone(id.Data)}
	e.setPeerID(sa, peer)
	policy := sa.conn.Unique
	if policy == config.UniqueNever {
		return false, nil
	}
	if m.Notify(message.INITIAL_CONTACT) != nil {
		return true, nil
	}
	if sa.initiator || (policy != config.UniqueKeep && policy != config.UniqueReplace) {
		return false, nil
	}
	dups := e.partiesSAs(peer.IDType, peer.Data, sa.conn.LocalID, func(o *ikeSA) bool {
		return o.state == ikeEstablished && o.conn.Name == sa.conn.Name && sa.sameParties(o, peer)
	})
	if len(dups) == 0 {
		return false, nil
	}
	if policy == config.UniqueKeep {
		return false, fmt.Errorf("unique = keep: peer %s already has IKE SA %s of connection %s", peer, dups[0].spis(), sa.conn.Name)
	}
	for _, o := range dups {
		o.logger().Info("deleting the IKE SA: a new one with the same peer is up (unique = replace)", "new", sa.spis())
		o.startDelete("replaced by a new IKE SA with the same peer (unique = replace)")
	}
	return false, nil
}

// dropForInitialContact removes the peer's other IKE SAs, with their
// children and without a delete (the peer has forgotten them), after the
// IKE_AUTH that carried INITIAL_CONTACT installed this SA's first child:
// make-before-break. A child of an old SA and the new one share their
// policies (refcounted, kernel.go), so the policies pass to the new SAs
// and traffic never meets a missing SA or policy, as it could when the
// old SAs went first (TestInitialContactMakeBeforeBreak). On XFRM a
// packet in that gap can leave an acquire state for the old child: the
// likely, unconfirmed cause of one TestVMCharonRestart failure.
func (sa *ikeSA) dropForInitialContact() {
	peer := sa.rec.peerID
	if peer == nil || sa.conn == nil {
		return
	}
	n := 0
	for _, o := range sa.e.partiesSAs(peer.IDType, peer.Data, sa.conn.LocalID, func(o *ikeSA) bool { return sa.sameParties(o, peer) }) {
		if !sa.sameParties(o, peer) { // ended with one destroyed before it
			continue
		}
		n++
		o.destroy(fmt.Sprintf("replaced: the peer %s sent INITIAL_CONTACT (it has no other IKE SA with us)", peer))
	}
	if n > 0 {
		sa.logger().Info("INITIAL_CONTACT: removed the peer's other IKE SAs", "peer", peer.String(), "removed", n)
	}
}
