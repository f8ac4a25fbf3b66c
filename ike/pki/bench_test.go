package pki

import (
	"crypto/x509"
	"testing"
	"time"
)

// BenchmarkVerifyChain is the certificate part of a peer's authentication:
// a three-certificate chain (root, intermediate, leaf) verified with a
// current CRL of the intermediate, per key type.
func BenchmarkVerifyChain(b *testing.B) {
	for _, kind := range []string{"p256", "rsa", "ed25519"} {
		p := newPKI(b, kind)
		crl := makeCRL(b, p.inter, p.interKey, now.Add(-time.Hour), now.Add(time.Hour))
		s, err := NewStore([]*x509.Certificate{p.root}, []*x509.RevocationList{crl})
		if err != nil {
			b.Fatal(err)
		}
		opts := VerifyOptions{Intermediates: []*x509.Certificate{p.inter}, Now: now}
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Verify(p.leaf, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
