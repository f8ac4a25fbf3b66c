package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"
)

func pemBlock(typ string, der []byte, headers map[string]string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der})
}

func TestParseCertificates(t *testing.T) {
	p := newPKI(t, "p256")
	// PEM bundle with a key block in between (skipped), DER alone.
	bundle := append(append(pemBlock("CERTIFICATE", p.leaf.Raw, nil), pemBlock("PRIVATE KEY", []byte{1}, nil)...),
		pemBlock("CERTIFICATE", p.inter.Raw, nil)...)
	cs, err := ParseCertificates(bundle)
	if err != nil || len(cs) != 2 || !cs[0].Equal(p.leaf) || !cs[1].Equal(p.inter) {
		t.Fatalf("PEM bundle: %d %v", len(cs), err)
	}
	cs, err = ParseCertificates(p.root.Raw)
	if err != nil || len(cs) != 1 || !cs[0].Equal(p.root) {
		t.Fatalf("DER: %v", err)
	}
	for name, bad := range map[string][]byte{
		"garbage":         []byte("not a certificate"),
		"truncated DER":   p.root.Raw[:100],
		"no CERTIFICATE":  pemBlock("PRIVATE KEY", []byte{1}, nil),
		"bad PEM content": pemBlock("CERTIFICATE", []byte{0x30, 0x00}, nil),
	} {
		_, err := ParseCertificates(bad)
		var le *LoadError
		if !errors.Is(err, ErrFormat) || !errors.As(err, &le) || le.What != "certificate" {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseCRL(t *testing.T) {
	p := newPKI(t, "p256")
	crl := makeCRL(t, p.inter, p.interKey, now, now.Add(time.Hour), p.leaf)
	for name, data := range map[string][]byte{"DER": crl.Raw, "PEM": pemBlock("X509 CRL", crl.Raw, nil)} {
		got, err := ParseCRL(data)
		if err != nil || len(got.RevokedCertificateEntries) != 1 || got.CheckSignatureFrom(p.inter) != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, bad := range [][]byte{[]byte("x"), pemBlock("CERTIFICATE", p.leaf.Raw, nil), pemBlock("X509 CRL", []byte{0x30}, nil)} {
		if _, err := ParseCRL(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: %v", bad[:min(len(bad), 20)], err)
		}
	}
}

// TestParsePrivateKey reads every encoding keyplane accepts, PEM and DER,
// and refuses encrypted keys and unusable key types.
func TestParsePrivateKey(t *testing.T) {
	rsaK, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecK, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edK := newKey(t, "ed25519")
	pkcs8 := func(k any) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sec1, _ := x509.MarshalECPrivateKey(ecK)
	pkcs1 := x509.MarshalPKCS1PrivateKey(rsaK)
	for _, c := range []struct {
		name string
		data []byte
		want crypto.PublicKey
	}{
		{"PKCS#8 RSA PEM", pemBlock("PRIVATE KEY", pkcs8(rsaK), nil), rsaK.Public()},
		{"PKCS#8 ECDSA PEM", pemBlock("PRIVATE KEY", pkcs8(ecK), nil), ecK.Public()},
		{"PKCS#8 Ed25519 PEM", pemBlock("PRIVATE KEY", pkcs8(edK), nil), edK.Public()},
		{"PKCS#1 PEM", pemBlock("RSA PRIVATE KEY", pkcs1, nil), rsaK.Public()},
		{"SEC 1 PEM", pemBlock("EC PRIVATE KEY", sec1, nil), ecK.Public()},
		{"SEC 1 PEM after EC PARAMETERS", append(pemBlock("EC PARAMETERS", []byte{6, 5, 0x2b, 0x81, 4, 0, 0x22}, nil), pemBlock("EC PRIVATE KEY", sec1, nil)...), ecK.Public()},
		{"PKCS#8 DER", pkcs8(edK), edK.Public()},
		{"PKCS#1 DER", pkcs1, rsaK.Public()},
		{"SEC 1 DER", sec1, ecK.Public()},
	} {
		k, err := ParsePrivateKey(c.data)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.want) {
			t.Errorf("%s: another key", c.name)
		}
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"legacy encrypted PEM", pemBlock("RSA PRIVATE KEY", []byte{1, 2}, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}), ErrEncryptedKey},
		{"encrypted PKCS#8", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2}, nil), ErrEncryptedKey},
		{"P-224", pemBlock("PRIVATE KEY", pkcs8(p224), nil), ErrKeyType},
		{"certificate only", pemBlock("CERTIFICATE", []byte{1}, nil), ErrFormat},
		{"bad PKCS#8", pemBlock("PRIVATE KEY", []byte{0x30, 0}, nil), ErrFormat},
		{"garbage DER", []byte{1, 2, 3}, ErrFormat},
	} {
		_, err := ParsePrivateKey(c.data)
		var le *LoadError
		if !errors.Is(err, c.want) || !errors.As(err, &le) || le.What != "private key" {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// The key matches its certificate, and not another.
	p := newPKI(t, "p256")
	if !KeyMatches(p.leaf, p.leafKey) || KeyMatches(p.leaf, p.rootKey) || KeyMatches(p.leaf, rsaK) {
		t.Error("KeyMatches")
	}
}
