package ike

import (
	"log/slog"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/ike/pki"
)

// handshake is an IKE SA's IKE_SA_INIT and IKE_AUTH state, which an
// established SA no longer needs: behind a pointer (made at its first write, read
// through orZero) it keeps ikeSA within the 768-octet size class, and
// an SA made by a rekey or a takeover never has one. dropHandshake
// lets it go.
type handshake struct {
	log    *slog.Logger // the SA's (ikeSA.logger)
	ni, nr []byte
	// cands: the responder's connections the addresses allow, until
	// IKE_AUTH picks one.
	cands []*config.Connection
	// ikeChosen is the IKE proposal chosen for the SA (the responder
	// re-checks it against the connection IKE_AUTH picks).
	ikeChosen message.Proposal
	// initReq and initResp are the IKE_SA_INIT messages as sent and
	// received (RealMessage1/2 of the AUTH computation).
	initReq, initResp []byte
	cookie            []byte
	dh                ikecrypto.KeyExchange
	halfOpenTimer     *timer
	initRetries       int
	// ho: counted as half-open (halfopen.go).
	ho halfOpenEntry

	// credPSK is the pre-shared key Credentials gave for this SA.
	credPSK ikecrypto.Key
	// credCert and credTrust are what CertCredentials gave for this SA
	// (certcreds.go).
	credCert  *CertChain
	credTrust *pki.Store
	// auth: the responder's IKE_AUTH request on a crypto worker, and
	// then what it computed (auth_offload.go).
	auth    *authWork
	authExt // certificates and signatures (auth_pubkey.go)
}

// authRun is the IKE_AUTH worker's state (nil: none): read for every
// message received, so without orZero's copy of the whole handshake.
func (sa *ikeSA) authRun() *authWork {
	if sa.hs == nil {
		return nil
	}
	return sa.hs.auth
}
