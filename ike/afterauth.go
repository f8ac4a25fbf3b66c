package ike

import (
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// dropHandshake lets go of what only IKE_SA_INIT and IKE_AUTH use, once
// IKE_AUTH is done (established, and its child derived): the two
// IKE_SA_INIT messages and the IntAuth chains (the AUTH computation),
// the nonces (the IKE_AUTH child's keys), the cookie (an IKE_SA_INIT
// sent again), the responder's candidate connections and its first
// choice of proposal (the pick of a connection at IKE_AUTH), and
// AES-GCM's built AEADs (ikecrypto.Idle). With
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
	sa.initReq, sa.initResp = nil, nil
	if sa.mke != nil {
		sa.mke.intAuthI, sa.mke.intAuthR = nil, nil
	}
	sa.ni, sa.nr = nil, nil
	sa.cookie = nil
	sa.cands = nil
	sa.ikeChosen = message.Proposal{}
	ikecrypto.Idle(sa.out) // AES-GCM: each later message builds its AEAD
	ikecrypto.Idle(sa.in)
}
