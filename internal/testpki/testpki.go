// Package testpki makes X.509 test PKIs with crypto/x509 — a root CA, an
// intermediate CA, end-entity certificates, CRLs — and writes them as PEM
// files for keyplane's configuration and for strongSwan's charon. It is
// for tests only: keys are generated fresh each time and nothing is kept.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// NewKey generates a key: "rsa2048", "rsa3072", "p256", "p384", "p521"
// or "ed25519".
func NewKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa3072":
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("testpki: key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serial atomic.Int64

func init() { serial.Store(time.Now().UnixNano() % 1e9) }

// Cert is a certificate with its key.
type Cert struct {
	X509 *x509.Certificate
	Key  crypto.Signer
}

// Spec describes a certificate.
type Spec struct {
	CN        string // subject C=CH, O=keyplane test, CN=...
	Kind      string // key kind (NewKey)
	CA        bool
	DNS       []string
	IPs       []net.IP
	NotBefore time.Time // zero: an hour ago
	NotAfter  time.Time // zero: in a year
}

// Issue makes a certificate signed by issuer (nil: self-signed).
func Issue(t testing.TB, s Spec, issuer *Cert) *Cert {
	t.Helper()
	key := NewKey(t, s.Kind)
	now := time.Now()
	if s.NotBefore.IsZero() {
		s.NotBefore = now.Add(-time.Hour)
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = now.Add(365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{Country: []string{"CH"}, Organization: []string{"keyplane test"}, CommonName: s.CN},
		NotBefore:             s.NotBefore,
		NotAfter:              s.NotAfter,
		DNSNames:              s.DNS,
		IPAddresses:           s.IPs,
		BasicConstraintsValid: true,
		IsCA:                  s.CA,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if s.CA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	parent, parentKey := tmpl, key
	if issuer != nil {
		parent, parentKey = issuer.X509, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{X509: c, Key: key}
}

// PKI is a root CA and an intermediate CA it issued.
type PKI struct {
	Root, Inter *Cert
}

// New makes a root and an intermediate CA with keys of kind, named after
// name.
func New(t testing.TB, kind, name string) *PKI {
	t.Helper()
	root := Issue(t, Spec{CN: name + " Root CA", Kind: kind, CA: true}, nil)
	inter := Issue(t, Spec{CN: name + " Intermediate CA", Kind: kind, CA: true}, root)
	return &PKI{Root: root, Inter: inter}
}

// Leaf issues an end-entity certificate from the intermediate CA, its
// subject CN and subjectAltName DNS both name.
func (p *PKI) Leaf(t testing.TB, kind, name string) *Cert {
	t.Helper()
	return Issue(t, Spec{CN: name, Kind: kind, DNS: []string{name}}, p.Inter)
}

// CRL returns a DER CRL of ca, valid from an hour ago for a day, listing
// revoked.
func CRL(t testing.TB, ca *Cert, revoked ...*x509.Certificate) []byte {
	t.Helper()
	now := time.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(serial.Add(1)), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour)}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.X509, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// CertPEM encodes certificates as PEM.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CRLPEM encodes a DER CRL as PEM.
func CRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// Write writes data to dir/name (mode 0600) and returns the path.
func Write(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Files are one end's credentials written for keyplane: its certificate
// followed by the intermediate CA (Certs), its key (Key), the root CA of
// the peer's PKI (CA) and, if made, a CRL (CRL).
type Files struct {
	Certs, Key, CA, CRL string
}

// WriteEnd writes an end's files into dir under prefix.
func WriteEnd(t testing.TB, dir, prefix string, own *PKI, leaf *Cert, peerCA *Cert) Files {
	t.Helper()
	return Files{
		Certs: Write(t, dir, prefix+"-certs.pem", CertPEM(leaf.X509, own.Inter.X509)),
		Key:   Write(t, dir, prefix+".key", KeyPEM(t, leaf.Key)),
		CA:    Write(t, dir, prefix+"-ca.pem", CertPEM(peerCA.X509)),
	}
}

// DN is the subject of c in strongSwan's notation.
func DN(c *x509.Certificate) string {
	return fmt.Sprintf("C=CH, O=keyplane test, CN=%s", c.Subject.CommonName)
}
