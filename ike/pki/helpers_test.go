package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// now is the fixed time tests verify at.
var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	switch kind {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "p256", "p384", "p521":
		c := map[string]elliptic.Curve{"p256": elliptic.P256(), "p384": elliptic.P384(), "p521": elliptic.P521()}[kind]
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	t.Fatalf("key kind %q", kind)
	return nil
}

var serial int64 = 100

// certSpec describes a certificate to create.
type certSpec struct {
	subject    pkix.Name
	ca         bool
	key        crypto.Signer
	issuer     *x509.Certificate // nil: self-signed
	issuerKey  crypto.Signer
	notBefore  time.Time
	notAfter   time.Time
	keyUsage   x509.KeyUsage
	dns        []string
	emails     []string
	ips        []net.IP
	crlURLs    []string
	rawSubject []byte
}

func makeCert(t testing.TB, s certSpec) *x509.Certificate {
	t.Helper()
	serial++
	if s.notBefore.IsZero() {
		s.notBefore = now.Add(-24 * time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = now.Add(365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               s.subject,
		RawSubject:            s.rawSubject,
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              s.keyUsage,
		DNSNames:              s.dns,
		EmailAddresses:        s.emails,
		IPAddresses:           s.ips,
		CRLDistributionPoints: s.crlURLs,
		BasicConstraintsValid: true,
		IsCA:                  s.ca,
	}
	if s.ca && s.keyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	parent, parentKey := tmpl, s.key
	if s.issuer != nil {
		parent, parentKey = s.issuer, s.issuerKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, s.key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func makeCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	serial++
	tmpl := &x509.RevocationList{Number: big.NewInt(serial), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// pkiSet is a root CA, an intermediate CA and a gateway certificate, all
// of one key kind.
type pkiSet struct {
	root, inter, leaf          *x509.Certificate
	rootKey, interKey, leafKey crypto.Signer
}

func newPKI(t testing.TB, kind string) pkiSet {
	t.Helper()
	var p pkiSet
	p.rootKey, p.interKey, p.leafKey = newKey(t, kind), newKey(t, kind), newKey(t, kind)
	p.root = makeCert(t, certSpec{subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"keyplane test"}, CommonName: kind + " Root CA"},
		ca: true, key: p.rootKey})
	p.inter = makeCert(t, certSpec{subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"keyplane test"}, CommonName: kind + " Intermediate CA"},
		ca: true, key: p.interKey, issuer: p.root, issuerKey: p.rootKey})
	p.leaf = makeCert(t, certSpec{subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"keyplane test"}, CommonName: "moon.example.org"},
		key: p.leafKey, issuer: p.inter, issuerKey: p.interKey, keyUsage: x509.KeyUsageDigitalSignature,
		dns: []string{"moon.example.org", "vpn.example.org"}, emails: []string{"admin@example.org"},
		ips: []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")}, crlURLs: []string{"http://crl.example.org/inter.crl"}})
	return p
}
