package pki

import (
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"
)

func TestVerifyChains(t *testing.T) {
	for _, kind := range []string{"rsa", "p256", "p384", "p521", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			p := newPKI(t, kind)
			s, err := NewStore([]*x509.Certificate{p.root}, nil)
			if err != nil {
				t.Fatal(err)
			}
			chain, err := s.Verify(p.leaf, VerifyOptions{Intermediates: []*x509.Certificate{p.inter}, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 3 || !chain[0].Equal(p.leaf) || !chain[1].Equal(p.inter) || !chain[2].Equal(p.root) {
				t.Fatalf("chain of %d", len(chain))
			}
			// The intermediate may also be a trust anchor itself.
			s2, _ := NewStore([]*x509.Certificate{p.inter}, nil)
			if _, err := s2.Verify(p.leaf, VerifyOptions{Now: now}); err != nil {
				t.Fatalf("intermediate as CA: %v", err)
			}
		})
	}
}

// TestVerifyRefusals is the table of certificates a peer must not get
// through with, and the error each gives.
func TestVerifyRefusals(t *testing.T) {
	p := newPKI(t, "p256")
	other := newPKI(t, "p256") // another CA with the same names
	k := newKey(t, "p256")
	leafWith := func(mod func(*certSpec)) *x509.Certificate {
		s := certSpec{subject: pkix.Name{CommonName: "sun.example.org"}, key: k, issuer: p.inter, issuerKey: p.interKey,
			keyUsage: x509.KeyUsageDigitalSignature}
		mod(&s)
		return makeCert(t, s)
	}
	expired := leafWith(func(s *certSpec) { s.notBefore, s.notAfter = now.Add(-48*time.Hour), now.Add(-time.Hour) })
	future := leafWith(func(s *certSpec) { s.notBefore = now.Add(time.Hour) })
	encipherOnly := leafWith(func(s *certSpec) { s.keyUsage = x509.KeyUsageKeyEncipherment })
	noKU := leafWith(func(s *certSpec) { s.keyUsage = 0 })
	nonRepudiation := leafWith(func(s *certSpec) { s.keyUsage = x509.KeyUsageContentCommitment })
	// A CA whose key usage lacks keyCertSign, and a leaf under it.
	badCAKey := newKey(t, "p256")
	badCA := makeCert(t, certSpec{subject: pkix.Name{CommonName: "CRL-only CA"}, ca: true, key: badCAKey,
		issuer: p.root, issuerKey: p.rootKey, keyUsage: x509.KeyUsageCRLSign})
	underBadCA := makeCert(t, certSpec{subject: pkix.Name{CommonName: "under bad CA"}, key: k, issuer: badCA, issuerKey: badCAKey})
	underLeaf := makeCert(t, certSpec{subject: pkix.Name{CommonName: "under a leaf"}, key: k, issuer: p.leaf, issuerKey: p.leafKey})
	revokedLeaf := leafWith(func(s *certSpec) {})
	leafCRL := makeCRL(t, p.inter, p.interKey, now.Add(-time.Hour), now.Add(24*time.Hour), revokedLeaf)
	interCRL := makeCRL(t, p.root, p.rootKey, now.Add(-time.Hour), now.Add(24*time.Hour), p.inter)
	// A CRL listing p.leaf but signed by the other CA's key: ignored.
	forgedCRL := makeCRL(t, other.inter, other.interKey, now.Add(-time.Hour), now.Add(24*time.Hour), p.leaf)

	store := func(crls ...*x509.RevocationList) *Store {
		s, err := NewStore([]*x509.Certificate{p.root}, crls)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	inter := []*x509.Certificate{p.inter, badCA}
	for _, c := range []struct {
		name  string
		store *Store
		leaf  *x509.Certificate
		inter []*x509.Certificate
		pol   RevocationPolicy
		want  error
	}{
		{"good", store(), p.leaf, inter, RevocationRelaxed, nil},
		{"wrong CA", store(), other.leaf, []*x509.Certificate{other.inter}, RevocationRelaxed, ErrUntrusted},
		{"intermediate missing", store(), p.leaf, nil, RevocationRelaxed, ErrUntrusted},
		{"wrong CA's intermediate", store(), p.leaf, []*x509.Certificate{other.inter}, RevocationRelaxed, ErrUntrusted},
		{"expired", store(), expired, inter, RevocationRelaxed, ErrExpired},
		{"not yet valid", store(), future, inter, RevocationRelaxed, ErrExpired},
		{"keyEncipherment only", store(), encipherOnly, inter, RevocationRelaxed, ErrKeyUsage},
		{"no key usage extension", store(), noKU, inter, RevocationRelaxed, nil},
		{"nonRepudiation", store(), nonRepudiation, inter, RevocationRelaxed, nil},
		{"CA without keyCertSign", store(), underBadCA, inter, RevocationRelaxed, ErrKeyUsage},
		{"issuer is not a CA", store(), underLeaf, append(inter, p.leaf), RevocationRelaxed, ErrChain},
		{"revoked leaf", store(leafCRL), revokedLeaf, inter, RevocationRelaxed, ErrRevoked},
		{"leaf not on the CRL", store(leafCRL), p.leaf, inter, RevocationStrict, ErrRevocationUnknown}, // no CRL for the intermediate
		{"strict with both CRLs", store(leafCRL, makeCRL(t, p.root, p.rootKey, now.Add(-time.Hour), now.Add(time.Hour))), p.leaf, inter, RevocationStrict, nil},
		{"revoked intermediate", store(interCRL), p.leaf, inter, RevocationRelaxed, ErrRevoked},
		{"forged CRL ignored", store(forgedCRL), p.leaf, inter, RevocationRelaxed, nil},
		{"strict without CRL", store(), p.leaf, inter, RevocationStrict, ErrRevocationUnknown},
		{"ifuri, leaf has a CDP", store(), p.leaf, inter, RevocationIfURI, ErrRevocationUnknown},
		{"ifuri, no CDP anywhere", store(), revokedLeaf, inter, RevocationIfURI, nil},
		{"stale CRL, relaxed", store(makeCRL(t, p.inter, p.interKey, now.Add(-48*time.Hour), now.Add(-24*time.Hour))), p.leaf, inter, RevocationRelaxed, nil},
		{"stale CRL, ifuri", store(makeCRL(t, p.inter, p.interKey, now.Add(-48*time.Hour), now.Add(-24*time.Hour))), p.leaf, inter, RevocationIfURI, ErrRevocationUnknown},
		{"stale CRL still revokes", store(makeCRL(t, p.inter, p.interKey, now.Add(-48*time.Hour), now.Add(-24*time.Hour), revokedLeaf)), revokedLeaf, inter, RevocationRelaxed, ErrRevoked},
		{"CRL from the future ignored", store(makeCRL(t, p.inter, p.interKey, now.Add(time.Hour), now.Add(48*time.Hour), revokedLeaf)), revokedLeaf, inter, RevocationRelaxed, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.store.Verify(c.leaf, VerifyOptions{Intermediates: c.inter, Now: now, Revocation: c.pol})
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *VerifyError
			if !errors.Is(err, c.want) || !errors.As(err, &ve) || ve.Subject == "" || ve.Reason == "" {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			t.Log(err)
		})
	}
	if _, err := NewStore([]*x509.Certificate{p.leaf}, nil); !errors.Is(err, ErrNotCA) {
		t.Errorf("leaf as CA: %v", err)
	}
}

func TestRevocationStatus(t *testing.T) {
	p := newPKI(t, "ed25519")
	fresh := makeCRL(t, p.inter, p.interKey, now.Add(-time.Hour), now.Add(time.Hour))
	stale := makeCRL(t, p.inter, p.interKey, now.Add(-3*time.Hour), now.Add(-2*time.Hour), p.leaf)
	s, _ := NewStore([]*x509.Certificate{p.root}, []*x509.RevocationList{fresh})
	if st, crl := s.Revocation(p.leaf, p.inter, now); st != StatusGood || crl != fresh {
		t.Errorf("fresh: %v", st)
	}
	if st, _ := s.Revocation(p.leaf, p.inter, now.Add(2*time.Hour)); st != StatusStale {
		t.Errorf("after nextUpdate: %v", st)
	}
	if st, _ := s.Revocation(p.inter, p.root, now); st != StatusUnknown {
		t.Errorf("no CRL of the root: %v", st)
	}
	s, _ = NewStore([]*x509.Certificate{p.root}, []*x509.RevocationList{fresh, stale})
	if st, crl := s.Revocation(p.leaf, p.inter, now); st != StatusRevoked || crl != stale {
		t.Errorf("revoked on an older CRL: %v", st)
	}
	for pol, name := range map[RevocationPolicy]string{RevocationRelaxed: "relaxed", RevocationIfURI: "ifuri", RevocationStrict: "strict"} {
		if pol.String() != name {
			t.Errorf("%d: %s", pol, pol)
		}
	}
}

// TestKeyHashes: CERTREQ hashes are SHA-1 over the DER SubjectPublicKeyInfo
// (RFC 7296 §3.7), here re-encoded from the key to check Go's raw field.
func TestKeyHashes(t *testing.T) {
	p := newPKI(t, "rsa")
	spki, err := x509.MarshalPKIXPublicKey(p.root.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if KeyHash(p.root) != sha1.Sum(spki) {
		t.Fatal("key hash is not SHA-1(SubjectPublicKeyInfo)")
	}
	other := newPKI(t, "p384")
	s, _ := NewStore([]*x509.Certificate{p.root, other.root}, nil)
	hs := s.KeyHashes()
	if len(hs) != 2 || hs[0] != KeyHash(p.root) || hs[1] != KeyHash(other.root) || len(s.CAs()) != 2 {
		t.Fatalf("KeyHashes %x", hs)
	}

	// What to send: leaf and intermediate, without the root.
	chain := IssuerChain(p.leaf, []*x509.Certificate{other.inter, p.inter, p.root})
	if len(chain) != 2 || !chain[1].Equal(p.inter) {
		t.Fatalf("IssuerChain of %d", len(chain))
	}
	if c := IssuerChain(p.leaf, nil); len(c) != 1 {
		t.Fatalf("IssuerChain without pool: %d", len(c))
	}
	// A CERTREQ for the root or the intermediate asks for this chain; one
	// for another CA does not; an empty one asks for any.
	pool := []*x509.Certificate{p.root, other.root}
	for _, c := range []struct {
		hashes [][20]byte
		want   bool
	}{
		{[][20]byte{KeyHash(p.root)}, true},
		{[][20]byte{KeyHash(p.inter)}, true},
		{[][20]byte{KeyHash(other.root), KeyHash(p.inter)}, true},
		{[][20]byte{KeyHash(other.root)}, false},
		{nil, true},
	} {
		if got := Requested(chain, pool, c.hashes); got != c.want {
			t.Errorf("Requested(%x) = %v", c.hashes, got)
		}
	}
}
