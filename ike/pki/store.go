package pki

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Verification errors; every error of Store.Verify is a *VerifyError
// wrapping one of them.
var (
	// ErrUntrusted: no chain from the certificate to a configured CA.
	ErrUntrusted = errors.New("pki: certificate not issued by a trusted CA")
	// ErrExpired: a certificate of the chain is expired or not yet valid.
	ErrExpired = errors.New("pki: certificate outside its validity period")
	// ErrKeyUsage: the key usage extension forbids the use (a peer
	// certificate without digitalSignature, a CA without keyCertSign).
	ErrKeyUsage = errors.New("pki: key usage does not allow it")
	// ErrRevoked: a CRL of the issuer lists the certificate.
	ErrRevoked = errors.New("pki: certificate revoked")
	// ErrRevocationUnknown: the revocation policy wants a current CRL and
	// none is loaded.
	ErrRevocationUnknown = errors.New("pki: revocation status unknown")
	// ErrChain: the chain is invalid otherwise (constraints, signature
	// algorithms, malformed certificates).
	ErrChain = errors.New("pki: invalid certificate chain")
	// ErrNotCA: a certificate configured as a CA is not one.
	ErrNotCA = errors.New("pki: not a CA certificate")
)

// VerifyError reports why a certificate was not accepted.
type VerifyError struct {
	Subject string // the certificate the failure is about, strongSwan style
	Reason  string
	Err     error
}

func (e *VerifyError) Error() string { return fmt.Sprintf("%v: %q: %s", e.Err, e.Subject, e.Reason) }

func (e *VerifyError) Unwrap() error { return e.Err }

func verr(c *x509.Certificate, err error, format string, args ...any) error {
	return &VerifyError{Subject: DNString(c.RawSubject), Reason: fmt.Sprintf(format, args...), Err: err}
}

// RevocationPolicy is swanctl's per-connection revocation setting.
type RevocationPolicy uint8

// Revocation policies.
const (
	// RevocationRelaxed fails only a certificate a CRL lists as revoked
	// (swanctl's default, "relaxed").
	RevocationRelaxed RevocationPolicy = iota
	// RevocationIfURI also fails a certificate that names CRL distribution
	// points when no current CRL of its issuer is loaded ("ifuri").
	RevocationIfURI
	// RevocationStrict fails every certificate without a current CRL of its
	// issuer ("strict").
	RevocationStrict
)

func (p RevocationPolicy) String() string {
	switch p {
	case RevocationRelaxed:
		return "relaxed"
	case RevocationIfURI:
		return "ifuri"
	case RevocationStrict:
		return "strict"
	}
	return fmt.Sprintf("RevocationPolicy(%d)", uint8(p))
}

// KeyHash is the CERTREQ form of a CA (RFC 7296 §3.7): the SHA-1 hash of
// its SubjectPublicKeyInfo.
func KeyHash(c *x509.Certificate) [sha1.Size]byte {
	return sha1.Sum(c.RawSubjectPublicKeyInfo)
}

// Store is the trusted CAs and their CRLs. It is immutable once built;
// a reload builds a new one.
type Store struct {
	cas  []*x509.Certificate
	pool *x509.CertPool
	crls []*x509.RevocationList
}

// NewStore builds a Store of CA certificates (each must be a CA:
// basicConstraints with cA set) and CRLs (checked when used, against the
// issuer in the chain).
func NewStore(cas []*x509.Certificate, crls []*x509.RevocationList) (*Store, error) {
	s := &Store{pool: x509.NewCertPool(), crls: crls}
	for _, c := range cas {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, verr(c, ErrNotCA, "basicConstraints cA is not set")
		}
		s.cas = append(s.cas, c)
		s.pool.AddCert(c)
	}
	return s, nil
}

// CAs returns the trusted CA certificates.
func (s *Store) CAs() []*x509.Certificate { return s.cas }

// KeyHashes returns the key hashes of the trusted CAs, for the CERTREQ
// payload this end sends.
func (s *Store) KeyHashes() [][sha1.Size]byte {
	out := make([][sha1.Size]byte, 0, len(s.cas))
	for _, c := range s.cas {
		out = append(out, KeyHash(c))
	}
	return out
}

// VerifyOptions are the inputs of one verification.
type VerifyOptions struct {
	// Intermediates are untrusted certificates that may complete the
	// chain: the peer's CERT payloads after the first, and locally loaded
	// intermediate CAs.
	Intermediates []*x509.Certificate
	// Now is the time the chain must be valid at.
	Now time.Time
	// Revocation is the connection's revocation policy.
	Revocation RevocationPolicy
}

// Verify checks that leaf, a peer's end-entity certificate, chains to a
// trusted CA through opts.Intermediates, that every certificate is valid
// at opts.Now, that the key usages allow the use (digitalSignature or
// nonRepudiation on leaf when it has the extension, RFC 4945 §5.1.3.2;
// keyCertSign on the CAs that have it, which crypto/x509 enforces while
// building the chain), and that no CRL of an issuer in
// the chain lists a certificate of it, under opts.Revocation. Extended key
// usages are not required (as strongSwan does not). It returns the chain,
// leaf first and the trusted CA last.
func (s *Store) Verify(leaf *x509.Certificate, opts VerifyOptions) ([]*x509.Certificate, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	inter := x509.NewCertPool()
	for _, c := range opts.Intermediates {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.pool,
		Intermediates: inter,
		CurrentTime:   opts.Now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, s.classify(leaf, opts.Intermediates, err)
	}
	var first error
	for _, chain := range chains {
		if err := s.checkChain(chain, opts); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		return chain, nil
	}
	return nil, first
}

// classify turns crypto/x509's error into a VerifyError that says why.
// x509 reports an issuer it refused (not a CA, no keyCertSign) as an
// unknown authority; look for such an issuer among the candidates first.
func (s *Store) classify(leaf *x509.Certificate, inter []*x509.Certificate, err error) error {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		for _, c := range append(append([]*x509.Certificate(nil), inter...), s.cas...) {
			if ua.Cert == nil || !bytes.Equal(ua.Cert.RawIssuer, c.RawSubject) || !signedBy(ua.Cert, c) {
				continue
			}
			if !c.BasicConstraintsValid || !c.IsCA {
				return verr(c, ErrChain, "issues %q but is not a CA (basicConstraints)", DNString(ua.Cert.RawSubject))
			}
			if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
				return verr(c, ErrKeyUsage, "issues %q but its key usage lacks keyCertSign", DNString(ua.Cert.RawSubject))
			}
		}
		return verr(leaf, ErrUntrusted, "issuer %q is not a configured CA, and no chain to one was found", DNString(leaf.RawIssuer))
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		c := leaf
		if ci.Cert != nil {
			c = ci.Cert
		}
		return verr(c, ErrExpired, "valid from %s to %s", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return verr(leaf, ErrChain, "%v", err)
}

// signedBy reports whether c's signature verifies with issuer's key
// (without crypto/x509's CA checks, which Verify reports otherwise).
func signedBy(c, issuer *x509.Certificate) bool {
	pc := &x509.Certificate{PublicKey: issuer.PublicKey, PublicKeyAlgorithm: issuer.PublicKeyAlgorithm,
		BasicConstraintsValid: true, IsCA: true, Version: 3}
	return c.CheckSignatureFrom(pc) == nil
}

func (s *Store) checkChain(chain []*x509.Certificate, opts VerifyOptions) error {
	leaf := chain[0]
	if leaf.KeyUsage != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return verr(leaf, ErrKeyUsage, "key usage has neither digitalSignature nor nonRepudiation")
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := s.checkRevocation(chain[i], chain[i+1], opts); err != nil {
			return err
		}
	}
	return nil
}

// RevocationStatus is what the loaded CRLs say of a certificate.
type RevocationStatus uint8

// Revocation statuses.
const (
	// StatusUnknown: no CRL of the issuer is loaded (or none verifies).
	StatusUnknown RevocationStatus = iota
	// StatusGood: a current CRL of the issuer does not list it.
	StatusGood
	// StatusStale: only CRLs past their nextUpdate, which do not list it.
	StatusStale
	// StatusRevoked: a CRL of the issuer lists it.
	StatusRevoked
)

// Revocation returns the status of c, issued by issuer, at now: the CRLs
// of the store that issuer signed are consulted; a revocation counts
// even from an outdated CRL.
func (s *Store) Revocation(c, issuer *x509.Certificate, now time.Time) (RevocationStatus, *x509.RevocationList) {
	st, used := StatusUnknown, (*x509.RevocationList)(nil)
	for _, crl := range s.crls {
		if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || crl.CheckSignatureFrom(issuer) != nil || crl.ThisUpdate.After(now) {
			continue
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(c.SerialNumber) == 0 && !e.RevocationTime.After(now) {
				return StatusRevoked, crl
			}
		}
		if crl.NextUpdate.IsZero() || now.Before(crl.NextUpdate) {
			st, used = StatusGood, crl
		} else if st == StatusUnknown {
			st, used = StatusStale, crl
		}
	}
	return st, used
}

func (s *Store) checkRevocation(c, issuer *x509.Certificate, opts VerifyOptions) error {
	st, crl := s.Revocation(c, issuer, opts.Now)
	switch {
	case st == StatusRevoked:
		return verr(c, ErrRevoked, "serial %x is on the CRL of %q (this update %s)", c.SerialNumber,
			DNString(issuer.RawSubject), crl.ThisUpdate.UTC().Format(time.RFC3339))
	case st == StatusGood:
		return nil
	case opts.Revocation == RevocationStrict,
		opts.Revocation == RevocationIfURI && len(c.CRLDistributionPoints) > 0:
		what := "no CRL of its issuer is loaded"
		if st == StatusStale {
			what = "the CRL of its issuer is past its next update"
		}
		return verr(c, ErrRevocationUnknown, "%s (revocation = %v)", what, opts.Revocation)
	}
	return nil
}

// IssuerChain returns leaf followed by the certificates of pool that
// issue it, one after the other, up to (not including) a self-signed one:
// the CERT payloads to send after the end-entity certificate. It stops at
// a loop or a certificate whose issuer is not in pool.
func IssuerChain(leaf *x509.Certificate, pool []*x509.Certificate) []*x509.Certificate {
	out := []*x509.Certificate{leaf}
	cur := leaf
	for len(out) <= len(pool) {
		if bytes.Equal(cur.RawIssuer, cur.RawSubject) && cur.CheckSignatureFrom(cur) == nil {
			break
		}
		var next *x509.Certificate
		for _, c := range pool {
			if bytes.Equal(c.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil || bytes.Equal(next.RawIssuer, next.RawSubject) {
			break
		}
		for _, seen := range out {
			if seen.Equal(next) {
				return out
			}
		}
		out = append(out, next)
		cur = next
	}
	return out
}

// Requested reports whether the peer's CERTREQ key hashes name a CA of
// chain (the certificates the chain's issuers use): a certificate chained
// to one of them is what the peer asked for. An empty request asks for
// any.
func Requested(chain []*x509.Certificate, pool []*x509.Certificate, hashes [][sha1.Size]byte) bool {
	if len(hashes) == 0 {
		return true
	}
	for _, h := range hashes {
		for _, c := range append(append([]*x509.Certificate(nil), chain...), pool...) {
			if KeyHash(c) != h {
				continue
			}
			for _, link := range chain {
				if bytes.Equal(link.RawIssuer, c.RawSubject) && link.CheckSignatureFrom(c) == nil {
					return true
				}
			}
		}
	}
	return false
}
