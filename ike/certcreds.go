package ike

import (
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/pki"
)

// CertCredentials is what an Options.Credentials may implement as well
// (the engine finds it by type assertion) to supply certificates the
// configuration does not hold. With it, a connection with local.auth =
// pubkey may have no local.certs, and one with remote.auth = pubkey no
// remote.cacerts (New and Reload accept it); the engine then asks,
// once per IKE SA for each. What the configuration holds is used first:
// a connection with local.certs never asks LocalCert, one with
// remote.cacerts never asks TrustAnchors.
//
// Both are called on the engine's loop, which waits: answer from
// memory, or within ctx (cancelled after CredentialTimeout). An error or
// a nil answer fails the authentication (AUTHENTICATION_FAILED to a
// peer; the initiate fails). local is the connection's local.id; remote
// is, as a responder, the identity the peer sent in IKE_AUTH, as an
// initiator, the connection's remote.id.
type CertCredentials interface {
	// LocalCert returns this end's certificate and private key, with
	// the intermediate CAs to send along.
	LocalCert(ctx context.Context, local, remote config.Identity) (*CertChain, error)
	// TrustAnchors returns the CAs (and CRLs) the peer's certificate
	// must chain to (pki.NewStore). An initiator asks before its
	// IKE_AUTH request, to send their CERTREQ; a responder, which does
	// not know the peer's identity in IKE_SA_INIT, sends no CERTREQ for
	// them.
	TrustAnchors(ctx context.Context, local, remote config.Identity) (*pki.Store, error)
}

// CertChain is an end's certificate from CertCredentials.
type CertChain struct {
	Leaf *x509.Certificate
	Key  crypto.Signer // Leaf's private key
	// Intermediates are the CAs between Leaf and a root, sent in CERT
	// payloads after it (roots and certificates that do not issue the
	// chain are left out).
	Intermediates []*x509.Certificate
}

// Errors of certificate credentials neither the configuration nor the
// CertCredentials has.
var (
	ErrNoCert  = errors.New("no local certificate")
	ErrNoTrust = errors.New("no trust anchors")
)

// localCert is the certificate connection c authenticates with in this
// IKE SA, and the chain to send: of local.certs the one the peer's
// CERTREQ asks for, else the one CertCredentials gives (asked once per
// IKE SA). Runs on the loop.
func (sa *ikeSA) localCert(c *config.Connection, peer config.Identity) (config.LocalCert, []*x509.Certificate, error) {
	if len(c.LocalCerts) == 0 && orZero(sa.hs).credCert == nil {
		cc, err := sa.askLocalCert(c, peer)
		if err != nil {
			return config.LocalCert{}, nil, err
		}
		made(&sa.hs).credCert = cc
	}
	hs := orZero(sa.hs)
	lc, chain := localCertFrom(c, hs.peerCertReq, hs.credCert)
	return lc, chain, nil
}

// localCertFrom is localCert's choice once the certificates are there:
// the configuration's (by the peer's CERTREQ hashes req), else cc.
func localCertFrom(c *config.Connection, req [][sha1.Size]byte, cc *CertChain) (config.LocalCert, []*x509.Certificate) {
	if len(c.LocalCerts) > 0 {
		lc := chooseLocalCert(c, req)
		return lc, pki.IssuerChain(lc.X509, intermediatePool(c))
	}
	lc := config.LocalCert{Cert: config.Cert{X509: cc.Leaf}, Key: cc.Key}
	return lc, pki.IssuerChain(cc.Leaf, append(append([]*x509.Certificate(nil), cc.Intermediates...), intermediatePool(c)...))
}

func (sa *ikeSA) askLocalCert(c *config.Connection, peer config.Identity) (*CertChain, error) {
	e := sa.e
	if e.certCreds == nil {
		return nil, fmt.Errorf("%w for connection %s", ErrNoCert, c.Name)
	}
	ctx, cancel := context.WithTimeout(e.ctx, CredentialTimeout)
	defer cancel()
	cc, err := e.certCreds.LocalCert(ctx, c.LocalID, peer)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w for %s (connection %s): credentials: %w", ErrNoCert, c.LocalID, c.Name, err)
	case cc == nil || cc.Leaf == nil || cc.Key == nil:
		return nil, fmt.Errorf("%w for %s (connection %s): credentials gave no certificate and key", ErrNoCert, c.LocalID, c.Name)
	case !pki.KeyMatches(cc.Leaf, cc.Key):
		return nil, fmt.Errorf("%w for %s (connection %s): credentials gave a key that is not the certificate %q's",
			ErrNoCert, c.LocalID, c.Name, pki.DNString(cc.Leaf.RawSubject))
	}
	return &CertChain{Leaf: cc.Leaf, Key: cc.Key, Intermediates: append([]*x509.Certificate(nil), cc.Intermediates...)}, nil
}

// trustFor is the trust store the peer's certificate is verified with
// under connection c: remote.cacerts' when configured, else the one
// CertCredentials gives (asked once per IKE SA). Runs on the loop.
func (sa *ikeSA) trustFor(c *config.Connection, peer config.Identity) (*pki.Store, error) {
	if c.Trust != nil {
		return c.Trust, nil
	}
	if st := orZero(sa.hs).credTrust; st != nil {
		return st, nil
	}
	e := sa.e
	if e.certCreds == nil {
		return nil, fmt.Errorf("%w for connection %s", ErrNoTrust, c.Name)
	}
	ctx, cancel := context.WithTimeout(e.ctx, CredentialTimeout)
	defer cancel()
	st, err := e.certCreds.TrustAnchors(ctx, c.LocalID, peer)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w for %s (connection %s): credentials: %w", ErrNoTrust, peer, c.Name, err)
	case st == nil:
		return nil, fmt.Errorf("%w for %s (connection %s): credentials gave no trust store", ErrNoTrust, peer, c.Name)
	}
	made(&sa.hs).credTrust = st
	return st, nil
}
