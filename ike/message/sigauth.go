package message

import (
	"encoding/binary"
	"fmt"
)

// SignatureAuth is the Authentication Data of the Digital Signature
// method (AUTH method 14, RFC 7427 §3): the DER AlgorithmIdentifier of the
// signature algorithm and the signature value.
type SignatureAuth struct {
	AlgorithmIdentifier []byte
	Signature           []byte
}

// ParseSignatureAuth splits the data of an AUTH payload of method 14: a
// one-octet length, an AlgorithmIdentifier of that length that must be one
// DER SEQUENCE, and the signature, which must not be empty. Failures are
// *ParseError for the AUTH payload, offsets relative to data.
func ParseSignatureAuth(data []byte) (SignatureAuth, error) {
	if len(data) < 1 {
		return SignatureAuth{}, perr(0, PayloadAUTH, ErrTruncated, "no ASN.1 length octet")
	}
	n := int(data[0])
	if n == 0 || 1+n > len(data) {
		return SignatureAuth{}, perr(0, PayloadAUTH, ErrTruncated, "AlgorithmIdentifier of %d octets, %d follow", n, len(data)-1)
	}
	alg := data[1 : 1+n]
	if err := checkDERSequence(alg); err != "" {
		return SignatureAuth{}, perr(1, PayloadAUTH, ErrInvalidSyntax, "AlgorithmIdentifier: %s", err)
	}
	if len(data) == 1+n {
		return SignatureAuth{}, perr(1+n, PayloadAUTH, ErrInvalidSyntax, "no signature after the AlgorithmIdentifier")
	}
	return SignatureAuth{AlgorithmIdentifier: alg, Signature: data[1+n:]}, nil
}

// Bytes encodes the Authentication Data.
func (s SignatureAuth) Bytes() ([]byte, error) {
	if len(s.AlgorithmIdentifier) == 0 || len(s.AlgorithmIdentifier) > 255 {
		return nil, eerr(PayloadAUTH, "AlgorithmIdentifier of %d octets; 1 to 255 fit", len(s.AlgorithmIdentifier))
	}
	if err := checkDERSequence(s.AlgorithmIdentifier); err != "" {
		return nil, eerr(PayloadAUTH, "AlgorithmIdentifier: %s", err)
	}
	if len(s.Signature) == 0 {
		return nil, eerr(PayloadAUTH, "empty signature")
	}
	b := make([]byte, 0, 1+len(s.AlgorithmIdentifier)+len(s.Signature))
	b = append(b, byte(len(s.AlgorithmIdentifier)))
	b = append(b, s.AlgorithmIdentifier...)
	return append(b, s.Signature...), nil
}

// checkDERSequence checks that b is exactly one DER SEQUENCE (tag and
// definite length; the content is the caller's concern).
func checkDERSequence(b []byte) string {
	if len(b) < 2 || b[0] != 0x30 {
		return "not a SEQUENCE"
	}
	l, hdr := int(b[1]), 2
	if l >= 0x80 {
		k := l & 0x7f
		if k == 0 || k > 2 || len(b) < 2+k {
			return "bad length octets"
		}
		l = 0
		for _, c := range b[2 : 2+k] {
			l = l<<8 | int(c)
		}
		if l < 0x80 || (k == 2 && l < 0x100) {
			return "length not in minimal form"
		}
		hdr += k
	}
	if hdr+l != len(b) {
		return fmt.Sprintf("SEQUENCE of %d octets in %d", hdr+l, len(b))
	}
	return ""
}

// NewSignatureHashAlgorithms returns the SIGNATURE_HASH_ALGORITHMS
// notification (RFC 7427 §4) listing the hash algorithms this end accepts
// in signatures.
func NewSignatureHashAlgorithms(hs ...HashAlgorithm) *Notify {
	d := make([]byte, 0, 2*len(hs))
	for _, h := range hs {
		d = binary.BigEndian.AppendUint16(d, uint16(h))
	}
	return &Notify{NotifyType: SIGNATURE_HASH_ALGORITHMS, Data: d}
}

// ParseSignatureHashAlgorithms reads the data of a SIGNATURE_HASH_ALGORITHMS
// notification: 16-bit hash algorithm identifiers. An odd length is a
// *ParseError (ErrInvalidSyntax).
func ParseSignatureHashAlgorithms(data []byte) ([]HashAlgorithm, error) {
	if len(data)%2 != 0 {
		return nil, perr(0, PayloadNotify, ErrInvalidSyntax, "SIGNATURE_HASH_ALGORITHMS data of %d octets is not a list of 16-bit identifiers", len(data))
	}
	out := make([]HashAlgorithm, 0, len(data)/2)
	for i := 0; i < len(data); i += 2 {
		out = append(out, HashAlgorithm(binary.BigEndian.Uint16(data[i:])))
	}
	return out, nil
}

// NewFragmentationSupported returns the IKEV2_FRAGMENTATION_SUPPORTED
// notification of an IKE_SA_INIT message (RFC 7383 §2.3): no data.
func NewFragmentationSupported() *Notify {
	return &Notify{NotifyType: IKEV2_FRAGMENTATION_SUPPORTED}
}

// NewIntermediateSupported returns the INTERMEDIATE_EXCHANGE_SUPPORTED
// notification of an IKE_SA_INIT message (RFC 9242 §3.1): no data.
func NewIntermediateSupported() *Notify {
	return &Notify{NotifyType: INTERMEDIATE_EXCHANGE_SUPPORTED}
}
