package ike

import "github.com/keyplane/keyplane/ike/ikecrypto"

// dropHandshake lets go of what only IKE_SA_INIT and IKE_AUTH use, once
// IKE_AUTH is done (established, and its child derived): the handshake
// state (handshake.go: the two IKE_SA_INIT messages for the AUTH
// computation, the nonces for the IKE_AUTH child's keys, the cookie, the
// responder's candidate connections and first choice of proposal, the
// credentials asked for, wiping the PSK's copy, the peer's signature
// hashes and CERTREQs, the AUTH worker's state), the
// IntAuth chains, AES-GCM's built AEADs (ikecrypto.Idle) and SK_pi and
// SK_pr (ikecrypto.IKEKeys.DropAuthKeys). With
// 100,000 IKE SAs up they were some 600 octets each (BenchmarkTunnelMemory).
// An IKE SA rekey, a child's rekey and a reauthentication make their own
// nonces and messages, the window keeps the last answer for a
// retransmitted request, and HA state (hastate.go) holds none of these.
// A retransmitted IKE_SA_INIT request after this is dropped, not answered
// again (halfopen.go): the initiator has had the answer, it sent
// IKE_AUTH.
func (sa *ikeSA) dropHandshake() {
	if sa.state != ikeEstablished {
		return
	}
	if sa.hs != nil {
		sa.hs.credPSK.Zero() // a copy of a key: wiped, not left to the GC
		sa.hs = nil
	}
	if sa.mke != nil {
		sa.mke.intAuthI, sa.mke.intAuthR = nil, nil
	}
	ikecrypto.Idle(sa.out) // AES-GCM: each later message builds its AEAD
	ikecrypto.Idle(sa.in)
	if sa.keys != nil {
		sa.keys.DropAuthKeys() // SK_pi and SK_pr: AUTH payloads only
	}
}
