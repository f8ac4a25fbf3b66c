package ike

import (
	"crypto/sha1"
	"slices"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// The notifications of IKE_SA_INIT that announce what this end supports
// beyond RFC 7296: IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383, unless
// fragmentation = no), SIGNATURE_HASH_ALGORITHMS (RFC 7427, always),
// INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9242, when a proposal has
// additional key exchanges), and the responder's CERTREQ.

// initExt is what IKE_SA_INIT settled beyond the suite.
type initExt struct {
	// fragAnnounced: we sent IKEV2_FRAGMENTATION_SUPPORTED, so the
	// peer's fragments are accepted; fragPeer: the peer did too, so ours
	// may be sent.
	fragAnnounced, fragPeer bool
	// interPeer: the peer sent INTERMEDIATE_EXCHANGE_SUPPORTED.
	interPeer bool
}

// hasAddKE reports whether a proposal names additional key exchanges.
func hasAddKE(ps []config.Proposal) bool {
	return slices.ContainsFunc(ps, config.Proposal.HasAddKE)
}

// initNotifies are the initiator's announcements in IKE_SA_INIT.
func (sa *ikeSA) initNotifies() []message.Payload {
	c := sa.conn
	var ps []message.Payload
	if c.Fragmentation.Announce() {
		ps = append(ps, message.NewFragmentationSupported())
		sa.fragAnnounced = true
	}
	ps = append(ps, message.NewSignatureHashAlgorithms(ikecrypto.DefaultSchemes.HashAlgorithms()...))
	if hasAddKE(c.Proposals) {
		ps = append(ps, message.NewIntermediateSupported())
	}
	return ps
}

// readInitAnswer takes the responder's announcements from its
// IKE_SA_INIT answer.
func (sa *ikeSA) readInitAnswer(m *message.Message) {
	sa.fragPeer = sa.fragAnnounced && m.Notify(message.IKEV2_FRAGMENTATION_SUPPORTED) != nil
	sa.interPeer = m.Notify(message.INTERMEDIATE_EXCHANGE_SUPPORTED) != nil
	sa.readAuthHints(m)
}

// initAnswerNotifies are the responder's announcements for the
// initiator's IKE_SA_INIT req, from the candidate connections: each
// announces what the initiator did and the connection supports, and a
// CERTREQ names the CAs of the candidates that want a certificate.
func (sa *ikeSA) initAnswerNotifies(req *message.Message) []message.Payload {
	cands := orZero(sa.hs).cands
	sa.readAuthHints(req)
	var ps []message.Payload
	if req.Notify(message.IKEV2_FRAGMENTATION_SUPPORTED) != nil && sa.conn.Fragmentation.Announce() {
		ps = append(ps, message.NewFragmentationSupported())
		sa.fragAnnounced, sa.fragPeer = true, true
	}
	if req.Notify(message.SIGNATURE_HASH_ALGORITHMS) != nil {
		ps = append(ps, message.NewSignatureHashAlgorithms(ikecrypto.DefaultSchemes.HashAlgorithms()...))
	}
	if req.Notify(message.INTERMEDIATE_EXCHANGE_SUPPORTED) != nil && slices.ContainsFunc(cands, func(c *config.Connection) bool { return hasAddKE(c.Proposals) }) {
		ps = append(ps, message.NewIntermediateSupported())
		sa.interPeer = true
	}
	var hashes [][sha1.Size]byte
	for _, c := range cands {
		if c.RemoteAuth != config.AuthPubkey || c.Trust == nil {
			continue
		}
		for _, h := range c.Trust.KeyHashes() {
			if !slices.Contains(hashes, h) {
				hashes = append(hashes, h)
			}
		}
	}
	if len(hashes) > 0 {
		ps = append(ps, message.NewCertReq(hashes...))
	}
	return ps
}

// peerIKEProposals are the initiator's IKE proposals a responder may
// choose from: without INTERMEDIATE_EXCHANGE_SUPPORTED, none that needs
// IKE_INTERMEDIATE (RFC 9370 §2.2.1 makes the notification mandatory
// with additional key exchanges).
func peerIKEProposals(req *message.Message, sap *message.SA) []message.Proposal {
	if req.Notify(message.INTERMEDIATE_EXCHANGE_SUPPORTED) != nil {
		return sap.Proposals
	}
	var out []message.Proposal
	for _, p := range sap.Proposals {
		if !slices.ContainsFunc(p.Transforms, func(t message.Transform) bool { return t.Type.AddKEIndex() > 0 && t.ID != 0 }) {
			out = append(out, p)
		}
	}
	return out
}
