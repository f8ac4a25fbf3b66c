package ike

import (
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/ike/pki"
)

// Authentication in IKE_AUTH (RFC 7296 §2.15) with a pre-shared key or
// with certificates and signatures: RFC 7427 digital signatures when the
// peer sent SIGNATURE_HASH_ALGORITHMS, else the classic RSA and ECDSA
// methods; CERT payloads with the chain up to (not including) the root,
// CERTREQ with the key hashes of the CAs we trust; the peer's chain
// verified to remote.cacerts (or CertCredentials' trust anchors) with
// validity, key usage and CRLs, its identity found in its certificate.
// After IKE_INTERMEDIATE exchanges the AUTH covers their IntAuth too
// (RFC 9242 §3.3.2).

// authExt is what an IKE SA learns about the peer's authentication
// capabilities.
type authExt struct {
	// peerHashes is the peer's SIGNATURE_HASH_ALGORITHMS (nil: it sent
	// none, and only the classic signature methods can be used).
	peerHashes []message.HashAlgorithm
	// peerCertReq are the CA key hashes of the peer's CERTREQ payloads.
	peerCertReq [][sha1.Size]byte
	// authMID is the message ID of the first IKE_AUTH request, part of
	// the signed octets after IKE_INTERMEDIATE.
	authMID uint32
}

// readAuthHints takes SIGNATURE_HASH_ALGORITHMS and CERTREQ from a
// peer's IKE_SA_INIT or IKE_AUTH message.
func (sa *ikeSA) readAuthHints(m *message.Message) {
	if n := m.Notify(message.SIGNATURE_HASH_ALGORITHMS); n != nil {
		if hs, err := message.ParseSignatureHashAlgorithms(n.Data); err == nil {
			made(&sa.hs).peerHashes = append([]message.HashAlgorithm{}, hs...)
		} else {
			sa.logger().Debug("ignoring malformed SIGNATURE_HASH_ALGORITHMS", "err", err)
		}
	}
	for _, p := range m.FindAll(message.PayloadCERTREQ) {
		cr := p.(*message.CertReq)
		if cr.Encoding == message.CertX509 {
			hs := made(&sa.hs)
			hs.peerCertReq = append(hs.peerCertReq, cr.Hashes()...)
		}
	}
}

// authOctets are the octets an AUTH payload signs or MACs (RFC 7296
// §2.15): InitiatorSignedOctets when ofInitiator, else the responder's,
// with the IntAuth of RFC 9242 appended after IKE_INTERMEDIATE exchanges.
// id is that side's ID payload.
func (sa *ikeSA) authOctets(ofInitiator bool, id *message.ID) ([]byte, error) {
	hs := orZero(sa.hs)
	skp, real, nonce := sa.keys.SKpi(), hs.initReq, hs.nr
	if !ofInitiator {
		skp, real, nonce = sa.keys.SKpr(), hs.initResp, hs.ni
	}
	return authOctets(sa.suite.PRF, skp, real, nonce, id.Body(), orZero(sa.mke).intAuthI, orZero(sa.mke).intAuthR, hs.authMID)
}

// authOctets is the computation of (*ikeSA).authOctets with explicit
// inputs; intAuthI and intAuthR are nil without IKE_INTERMEDIATE.
func authOctets(prf message.PRFID, skp, realMessage, nonce, idBody, intAuthI, intAuthR []byte, authMID uint32) ([]byte, error) {
	oct, err := ikecrypto.SignedOctets(prf, skp, realMessage, nonce, idBody)
	if err != nil || intAuthI == nil {
		return oct, err
	}
	return ikecrypto.AppendIntAuth(oct, intAuthI, intAuthR, authMID)
}

// ourAuth returns this end's payloads of IKE_AUTH: its ID id, the CERT
// payloads of the chosen certificate (pubkey), a CERTREQ (initiator with
// a pubkey peer), the peer's ID idr when not nil, and the AUTH payload.
func (sa *ikeSA) ourAuth(c *config.Connection, id, idr *message.ID) ([]message.Payload, error) {
	oct, err := sa.authOctets(sa.initiator, id)
	if err != nil {
		return nil, fmt.Errorf("AUTH: %w", err)
	}
	ps, note, err := makeOurAuth(c, id, idr, oct, sa.suite.PRF, sa.initiator, orZero(sa.hs).peerHashes, sa.peerIdentity(c), sa.loopCreds())
	note.log(sa)
	return ps, err
}

// authCreds are where an AUTH computation gets the secrets of a
// connection: on the loop the IKE SA's, which may ask Credentials
// (loopCreds); on a crypto worker a snapshot, which answers errOnLoop
// when only Credentials has them (auth_offload.go).
type authCreds struct {
	psk   func(c *config.Connection, peer config.Identity) ([]byte, error)
	trust func(c *config.Connection, peer config.Identity) (*pki.Store, error)
	local func(c *config.Connection, peer config.Identity) (config.LocalCert, []*x509.Certificate, error)
}

func (sa *ikeSA) loopCreds() authCreds {
	return authCreds{psk: sa.pskFor, trust: sa.trustFor, local: sa.localCert}
}

// authNote is what a signature AUTH computation logs, kept for the loop
// when a worker computed it.
type authNote struct {
	peer, subject, ca, scheme string
	ours                      bool // our signature, else the peer's verified
}

func (n *authNote) log(sa *ikeSA) {
	switch {
	case n == nil:
	case n.ours:
		sa.logger().Info("authenticating with a certificate", "subject", n.subject, "scheme", n.scheme)
	default:
		sa.logger().Info("peer's certificate and signature verified", "peer", n.peer, "subject", n.subject, "ca", n.ca, "scheme", n.scheme)
	}
}

// makeOurAuth is ourAuth's computation with explicit inputs: oct are the
// octets to sign or MAC, peer the identity the credentials are asked for.
// An error wrapping errOnLoop: cr cannot give the secret here.
func makeOurAuth(c *config.Connection, id, idr *message.ID, oct []byte, prf message.PRFID, initiator bool,
	peerHashes []message.HashAlgorithm, peer config.Identity, cr authCreds) ([]message.Payload, *authNote, error) {
	// ID, AUTH and room for a CERTREQ and IDr: one allocation on the
	// usual paths (a certificate chain grows it).
	ps := make([]message.Payload, 1, 4)
	ps[0] = id
	var auth *message.Auth
	var note *authNote
	switch c.LocalAuth {
	case config.AuthPubkey:
		lc, chain, err := cr.local(c, peer)
		if err != nil {
			return nil, nil, err
		}
		for _, x := range chain {
			ps = append(ps, &message.Cert{Encoding: message.CertX509, Data: x.Raw})
		}
		a, scheme, err := signAuth(oct, lc, peerHashes)
		if err != nil {
			return nil, nil, fmt.Errorf("AUTH with certificate %q: %w", pki.DNString(lc.X509.RawSubject), err)
		}
		note = &authNote{ours: true, subject: pki.DNString(lc.X509.RawSubject), scheme: scheme.String()}
		auth = a
	default:
		key, err := cr.psk(c, peer)
		if err != nil {
			return nil, nil, err
		}
		d, err := ikecrypto.PSKAuth(prf, key, oct)
		if err != nil {
			return nil, nil, fmt.Errorf("AUTH: %w", err)
		}
		auth = &message.Auth{Method: message.AuthSharedKeyMIC, Data: d}
	}
	if initiator && c.RemoteAuth == config.AuthPubkey {
		st, err := cr.trust(c, peer)
		if err != nil {
			return nil, nil, err
		}
		ps = append(ps, message.NewCertReq(st.KeyHashes()...))
	}
	if idr != nil {
		ps = append(ps, idr)
	}
	return append(ps, auth), note, nil
}

// signAuth signs the AUTH octets with a local certificate's key: an RFC
// 7427 signature with a hash the peer announced, or the classic method
// when it announced none. (A pure crypto step, for a worker pool.)
func signAuth(octets []byte, lc config.LocalCert, peerHashes []message.HashAlgorithm) (*message.Auth, ikecrypto.Scheme, error) {
	return ikecrypto.Sign(octets, lc.Key, ikecrypto.SignOptions{PeerHashes: peerHashes})
}

// chooseLocalCert picks the first local certificate whose chain the
// peer's CERTREQ asks for, else the first (strongSwan does the same).
func chooseLocalCert(c *config.Connection, req [][sha1.Size]byte) config.LocalCert {
	pool := intermediatePool(c)
	for _, lc := range c.LocalCerts {
		if pki.Requested(pki.IssuerChain(lc.X509, pool), pool, req) {
			return lc
		}
	}
	return c.LocalCerts[0]
}

// intermediatePool is what our chain is built from: local.certs'
// intermediates and the CAs we trust for the peer (a shared CA's
// intermediates count too; IssuerChain never includes a root).
func intermediatePool(c *config.Connection) []*x509.Certificate {
	var pool []*x509.Certificate
	for _, x := range c.Intermediates {
		pool = append(pool, x.X509)
	}
	for _, x := range c.CACerts {
		pool = append(pool, x.X509)
	}
	return pool
}

// checkPeerAuth verifies the peer's authentication in IKE_AUTH under
// connection c: its AUTH payload with the pre-shared key, or its
// certificate chain, identity and signature. It returns why not ("" if
// it verifies), for AUTHENTICATION_FAILED and the log.
func (sa *ikeSA) checkPeerAuth(c *config.Connection, m *message.Message, id *message.ID, auth *message.Auth) string {
	oct, err := sa.authOctets(!sa.initiator, id)
	if err != nil {
		return "AUTH octets: " + err.Error()
	}
	why, note, _ := verifyPeerAuth(c, m, id, auth, oct, sa.suite.PRF, sa.loopCreds(), sa.e.clk.Now())
	note.log(sa)
	return why
}

// verifyPeerAuth is checkPeerAuth's computation with explicit inputs:
// oct are the peer's signed octets, now the time certificates are
// checked at. err is only ever errOnLoop: cr cannot give the secret here
// (why and note are then empty).
func verifyPeerAuth(c *config.Connection, m *message.Message, id *message.ID, auth *message.Auth, oct []byte,
	prf message.PRFID, cr authCreds, now time.Time) (why string, note *authNote, err error) {
	who := idText(id)
	peer := config.Identity{Type: id.IDType, Data: id.Data}
	if c.RemoteAuth == config.AuthPSK {
		if auth.Method != message.AuthSharedKeyMIC {
			return fmt.Sprintf("peer %s uses %v; connection %s expects a pre-shared key", who, auth.Method, c.Name), nil, nil
		}
		key, err := cr.psk(c, peer)
		if errors.Is(err, errOnLoop) {
			return "", nil, err
		}
		if err != nil {
			return fmt.Sprintf("peer %s: %v", who, err), nil, nil
		}
		if ok, err := ikecrypto.VerifyPSKAuth(prf, key, oct, auth.Data); err != nil || !ok {
			return fmt.Sprintf("peer %s's AUTH does not verify with the pre-shared key of connection %s", who, c.Name), nil, nil
		}
		return "", nil, nil
	}
	if auth.Method == message.AuthSharedKeyMIC {
		return fmt.Sprintf("peer %s authenticates with a pre-shared key; connection %s expects a certificate (pubkey)", who, c.Name), nil, nil
	}
	leaf, inter, why := peerCerts(m)
	if why != "" {
		return fmt.Sprintf("peer %s: %s", who, why), nil, nil
	}
	trust, err := cr.trust(c, peer)
	if errors.Is(err, errOnLoop) {
		return "", nil, err
	}
	if err != nil {
		return fmt.Sprintf("peer %s: %v", who, err), nil, nil
	}
	chain, err := trust.Verify(leaf, pki.VerifyOptions{Intermediates: inter, Now: now, Revocation: c.Revocation})
	if err != nil {
		return fmt.Sprintf("peer %s's certificate refused: %v", who, err), nil, nil
	}
	if pki.CertMatches(leaf, pki.Identity{Type: id.IDType, Data: id.Data}) == pki.MatchNone {
		return fmt.Sprintf("peer identity %s is not in its certificate %q", who, pki.DNString(leaf.RawSubject)), nil, nil
	}
	scheme, err := verifyAuth(oct, auth, leaf)
	if err != nil {
		return fmt.Sprintf("peer %s's AUTH with certificate %q: %v", who, pki.DNString(leaf.RawSubject), err), nil, nil
	}
	return "", &authNote{peer: who, subject: pki.DNString(leaf.RawSubject), ca: pki.DNString(chain[len(chain)-1].RawSubject), scheme: scheme.String()}, nil
}

// verifyAuth checks a signature AUTH payload with the certificate's key.
// (A pure crypto step, for a worker pool.)
func verifyAuth(octets []byte, auth *message.Auth, leaf *x509.Certificate) (ikecrypto.Scheme, error) {
	return ikecrypto.Verify(octets, auth, leaf.PublicKey, ikecrypto.VerifyPolicy{})
}

// maxPeerCerts bounds the CERT payloads of one IKE_AUTH that are parsed.
const maxPeerCerts = 8

// peerCerts parses the peer's X.509 CERT payloads: the first is its own
// certificate, the others intermediates. Other encodings are ignored.
func peerCerts(m *message.Message) (leaf *x509.Certificate, inter []*x509.Certificate, why string) {
	n := 0
	for _, p := range m.FindAll(message.PayloadCERT) {
		c := p.(*message.Cert)
		if c.Encoding != message.CertX509 {
			continue
		}
		if n++; n > maxPeerCerts {
			return nil, nil, fmt.Sprintf("more than %d certificates", maxPeerCerts)
		}
		x, err := x509.ParseCertificate(c.Data)
		if err != nil {
			return nil, nil, fmt.Sprintf("CERT payload %d does not parse: %v", n, err)
		}
		if leaf == nil {
			leaf = x
		} else {
			inter = append(inter, x)
		}
	}
	if leaf == nil {
		return nil, nil, "sent no X.509 certificate (CERT payload)"
	}
	return leaf, inter, ""
}

// idText renders an ID payload for logs, a DN as strongSwan writes it.
func idText(id *message.ID) string {
	if id.IDType == message.IDDerASN1DN {
		return pki.DNString(id.Data)
	}
	return id.String()
}

// credentialsText names what a connection authenticates with, for the
// reason of a refusal.
func credentialsText(c *config.Connection) string {
	if c.LocalAuth == config.AuthPSK && c.RemoteAuth == config.AuthPSK {
		return "pre-shared key"
	}
	return "credentials (certificates, CAs, pre-shared key)"
}
