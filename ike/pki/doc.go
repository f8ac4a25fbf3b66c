// Package pki is keyplane's X.509 layer for public key authentication in
// IKEv2, with Go's crypto/x509 underneath: it loads certificates, CRLs and
// private keys from bytes (PEM or DER; PKCS#8, PKCS#1 and SEC 1 keys),
// verifies a peer's certificate chain to the configured CAs with
// intermediates, validity, key usage and CRL revocation checks, matches a
// peer's IKE identity against a certificate with strongSwan's semantics
// (subject DN with wildcard RDNs, subjectAltName DNS, email and IP), and
// gives the CA key hashes of CERTREQ payloads (RFC 7296 §3.7).
//
// Everything here is pure: reading files (and checking their modes) is the
// caller's job.
package pki
