package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Loading errors; every error of the Parse functions is a *LoadError
// wrapping one of them.
var (
	// ErrFormat: the bytes are not in a format this package reads, or are
	// malformed.
	ErrFormat = errors.New("pki: unreadable")
	// ErrEncryptedKey: the private key is encrypted (a passphrase-protected
	// PEM or PKCS#8 block); keyplane reads unencrypted keys only and relies
	// on the file's permissions.
	ErrEncryptedKey = errors.New("pki: encrypted private key")
	// ErrKeyType: a key of a type keyplane cannot use for IKE (RSA, ECDSA
	// on P-256/384/521 and Ed25519 are).
	ErrKeyType = errors.New("pki: unsupported key type")
)

// LoadError reports what could not be loaded and why.
type LoadError struct {
	What   string // "certificate", "CRL", "private key"
	Reason string
	Err    error
}

func (e *LoadError) Error() string { return fmt.Sprintf("%v: %s: %s", e.Err, e.What, e.Reason) }

func (e *LoadError) Unwrap() error { return e.Err }

func loadErr(what string, err error, format string, args ...any) error {
	return &LoadError{What: what, Reason: fmt.Sprintf(format, args...), Err: err}
}

// isPEM reports whether data looks like PEM rather than DER.
func isPEM(data []byte) bool {
	return bytes.Contains(data, []byte("-----BEGIN "))
}

// ParseCertificates reads one or more X.509 certificates: PEM blocks of
// type CERTIFICATE (other block types are skipped, as strongSwan's pem
// plugin does), or one DER certificate.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	const what = "certificate"
	if !isPEM(data) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, loadErr(what, ErrFormat, "neither PEM nor a DER certificate: %v", err)
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	for i := 1; ; i++ {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, loadErr(what, ErrFormat, "PEM block %d: %v", i, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, loadErr(what, ErrFormat, "no CERTIFICATE PEM block")
	}
	return out, nil
}

// ParseCRL reads one certificate revocation list, PEM (X509 CRL) or DER.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	const what = "CRL"
	der := data
	if isPEM(data) {
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				return nil, loadErr(what, ErrFormat, "no X509 CRL PEM block")
			}
			if b.Type == "X509 CRL" {
				der = b.Bytes
				break
			}
		}
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, loadErr(what, ErrFormat, "%v", err)
	}
	return crl, nil
}

// ParsePrivateKey reads an unencrypted private key: PEM blocks PRIVATE KEY
// (PKCS#8), RSA PRIVATE KEY (PKCS#1) or EC PRIVATE KEY (SEC 1), or the same
// in DER (tried in that order). It returns an RSA, ECDSA (P-256, P-384,
// P-521) or Ed25519 key as a crypto.Signer.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	const what = "private key"
	if isPEM(data) {
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				return nil, loadErr(what, ErrFormat, "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY PEM block")
			}
			if _, enc := b.Headers["Proc-Type"]; enc || b.Type == "ENCRYPTED PRIVATE KEY" {
				return nil, loadErr(what, ErrEncryptedKey, "PEM block %s is encrypted", b.Type)
			}
			var k any
			var err error
			switch b.Type {
			case "PRIVATE KEY":
				k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
			case "RSA PRIVATE KEY":
				k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
			case "EC PRIVATE KEY":
				k, err = x509.ParseECPrivateKey(b.Bytes)
			default:
				continue
			}
			if err != nil {
				return nil, loadErr(what, ErrFormat, "%s: %v", b.Type, err)
			}
			return checkSigner(k)
		}
	}
	if k, err := x509.ParsePKCS8PrivateKey(data); err == nil {
		return checkSigner(k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(data); err == nil {
		return checkSigner(k)
	}
	if k, err := x509.ParseECPrivateKey(data); err == nil {
		return checkSigner(k)
	}
	return nil, loadErr(what, ErrFormat, "not PEM, and not a DER PKCS#8, PKCS#1 or SEC 1 key")
}

func checkSigner(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().Name {
		case "P-256", "P-384", "P-521":
			return k, nil
		}
		return nil, loadErr("private key", ErrKeyType, "ECDSA on %s", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, loadErr("private key", ErrKeyType, "%T", k)
}

// KeyMatches reports whether the private key belongs to the certificate.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}
