// Package message is the RFC 7296 (IKEv2) wire codec: the IKE header, the
// payloads the IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA and INFORMATIONAL
// exchanges use, and the Encrypted (SK, RFC 7296 §3.14) and Encrypted
// Fragment (SKF, RFC 7383) payloads.
//
// Decoding is strict: every length is checked against its container, and a
// failure is a *ParseError that names the offset, the payload and the reason,
// and wraps one of the sentinel errors (ErrTruncated, ErrInvalidSyntax,
// ErrUnsupportedCritical, ErrInvalidMajorVersion, ErrObsoleteVersion,
// ErrIntegrity). ParseError.Notify tells which error notification, if any,
// RFC 7296 lets a responder answer with. Reserved fields are ignored on
// receipt and sent as zero, as RFC 7296 §2.5 asks.
//
// CERT and CERTREQ decode to *Cert and *CertReq; the Digital Signature
// AUTH data (RFC 7427) splits with ParseSignatureAuth; RFC 9370's ADDKE1..7
// transform types travel in SA payloads like the others. Fragments of one
// message are collected by a Reassembler with limits (RFC 7383), and
// IntAuthOctets gives what RFC 9242 authenticates of an IKE_INTERMEDIATE
// message.
//
// Payloads this package does not model (CP, EAP, and types it does not
// know) decode to *Unknown. An unknown payload type with the
// Critical bit set fails the parse with ErrUnsupportedCritical (RFC 7296
// §2.5); an unknown non-critical one is kept as *Unknown so the caller may
// skip it.
//
// The codec does no cryptography itself: the SK payload is sealed and opened
// through the Cipher interface, which package ike/ikecrypto implements.
package message
