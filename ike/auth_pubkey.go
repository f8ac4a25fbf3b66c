package ike

import (
	"crypto/sha1"
	"crypto/x509"
	"fmt"

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
			sa.peerHashes = append([]message.HashAlgorithm{}, hs...)
		} else {
			sa.log.Debug("ignoring malformed SIGNATURE_HASH_ALGORITHMS", "err", err)
		}
	}
	for _, p := range m.FindAll(message.PayloadCERTREQ) {
		cr := p.(*message.CertReq)
		if cr.Encoding == message.CertX509 {
			sa.peerCertReq = append(sa.peerCertReq, cr.Hashes()...)
		}
	}
}

// authOctets are the octets an AUTH payload signs or MACs (RFC 7296
// §2.15): InitiatorSignedOctets when ofInitiator, else the responder's,
// with the IntAuth of RFC 9242 appended after IKE_INTERMEDIATE exchanges.
// id is that side's ID payload.
func (sa *ikeSA) authOctets(ofInitiator bool, id *message.ID) ([]byte, error) {
	skp, real, nonce := sa.keys.SKpi, sa.initReq, sa.nr
	if !ofInitiator {
		skp, real, nonce = sa.keys.SKpr, sa.initResp, sa.ni
	}
	return authOctets(sa.suite.PRF, skp, real, nonce, id.Body(), sa.intAuthI, sa.intAuthR, sa.authMID)
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
	ps := []message.Payload{id}
	oct, err := sa.authOctets(sa.initiator, id)
	if err != nil {
		return nil, fmt.Errorf("AUTH: %w", err)
	}
	var auth *message.Auth
	switch c.LocalAuth {
	case config.AuthPubkey:
		lc, chain, err := sa.localCert(c, sa.peerIdentity(c))
		if err != nil {
			return nil, err
		}
		for _, x := range chain {
			ps = append(ps, &message.Cert{Encoding: message.CertX509, Data: x.Raw})
		}
		a, scheme, err := signAuth(oct, lc, sa.peerHashes)
		if err != nil {
			return nil, fmt.Errorf("AUTH with certificate %q: %w", pki.DNString(lc.X509.RawSubject), err)
		}
		sa.log.Info("authenticating with a certificate", "subject", pki.DNString(lc.X509.RawSubject), "scheme", scheme.String())
		auth = a
	default:
		key, err := sa.pskFor(c, sa.peerIdentity(c))
		if err != nil {
			return nil, err
		}
		d, err := ikecrypto.PSKAuth(sa.suite.PRF, key, oct)
		if err != nil {
			return nil, fmt.Errorf("AUTH: %w", err)
		}
		auth = &message.Auth{Method: message.AuthSharedKeyMIC, Data: d}
	}
	if sa.initiator && c.RemoteAuth == config.AuthPubkey {
		st, err := sa.trustFor(c, sa.peerIdentity(c))
		if err != nil {
			return nil, err
		}
		ps = append(ps, message.NewCertReq(st.KeyHashes()...))
	}
	if idr != nil {
		ps = append(ps, idr)
	}
	return append(ps, auth), nil
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
	who := idText(id)
	if c.RemoteAuth == config.AuthPSK {
		if auth.Method != message.AuthSharedKeyMIC {
			return fmt.Sprintf("peer %s uses %v; connection %s expects a pre-shared key", who, auth.Method, c.Name)
		}
		key, err := sa.pskFor(c, config.Identity{Type: id.IDType, Data: id.Data})
		if err != nil {
			return fmt.Sprintf("peer %s: %v", who, err)
		}
		if ok, err := ikecrypto.VerifyPSKAuth(sa.suite.PRF, key, oct, auth.Data); err != nil || !ok {
			return fmt.Sprintf("peer %s's AUTH does not verify with the pre-shared key of connection %s", who, c.Name)
		}
		return ""
	}
	if auth.Method == message.AuthSharedKeyMIC {
		return fmt.Sprintf("peer %s authenticates with a pre-shared key; connection %s expects a certificate (pubkey)", who, c.Name)
	}
	leaf, inter, why := peerCerts(m)
	if why != "" {
		return fmt.Sprintf("peer %s: %s", who, why)
	}
	trust, err := sa.trustFor(c, config.Identity{Type: id.IDType, Data: id.Data})
	if err != nil {
		return fmt.Sprintf("peer %s: %v", who, err)
	}
	chain, err := trust.Verify(leaf, pki.VerifyOptions{Intermediates: inter, Now: sa.e.clk.Now(), Revocation: c.Revocation})
	if err != nil {
		return fmt.Sprintf("peer %s's certificate refused: %v", who, err)
	}
	if pki.CertMatches(leaf, pki.Identity{Type: id.IDType, Data: id.Data}) == pki.MatchNone {
		return fmt.Sprintf("peer identity %s is not in its certificate %q", who, pki.DNString(leaf.RawSubject))
	}
	scheme, err := verifyAuth(oct, auth, leaf)
	if err != nil {
		return fmt.Sprintf("peer %s's AUTH with certificate %q: %v", who, pki.DNString(leaf.RawSubject), err)
	}
	sa.log.Info("peer's certificate and signature verified", "peer", who, "subject", pki.DNString(leaf.RawSubject),
		"ca", pki.DNString(chain[len(chain)-1].RawSubject), "scheme", scheme.String())
	return ""
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
