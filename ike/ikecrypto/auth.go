package ikecrypto

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"net/netip"

	"github.com/keyplane/keyplane/ike/message"
)

// keyPad is the PSK key pad of RFC 7296 §2.15 (a variable: no conversion
// per use).
var keyPad = []byte("Key Pad for IKEv2")

// SignedOctets returns the octets that the AUTH payload of one side signs
// (RFC 7296 §2.15):
//
//	InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
//	ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)
//
// realMessage is that side's IKE_SA_INIT message exactly as sent, peerNonce
// the other side's Nonce payload data, skp that side's SK_pi or SK_pr, and
// idBody that side's ID payload body (message.ID.Body).
func SignedOctets(prf message.PRFID, skp []byte, realMessage, peerNonce, idBody []byte) ([]byte, error) {
	p, err := NewPRF(prf)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(realMessage)+len(peerNonce)+p.Size())
	out = append(append(out, realMessage...), peerNonce...)
	return p.appendSum(out, skp, idBody), nil
}

// PSKAuth returns the AUTH data of the shared key MIC method (RFC 7296
// §2.15): prf(prf(secret, "Key Pad for IKEv2"), signedOctets). The same
// computation with the EAP MSK as the secret authenticates EAP.
func PSKAuth(prf message.PRFID, secret, signedOctets []byte) ([]byte, error) {
	p, err := NewPRF(prf)
	if err != nil {
		return nil, err
	}
	return p.pskAuth(make([]byte, 0, p.Size()), secret, signedOctets), nil
}

// pskAuth appends prf(prf(secret, keyPad), signedOctets) to dst, both
// PRFs on one pooled state: the padded key never leaves it (it
// authenticates as well as the secret itself, and is wiped with it).
func (p PRF) pskAuth(dst, secret, signedOctets []byte) []byte {
	st := p.macs.Get().(*hmacState)
	defer p.macs.Put(st)
	st.setKey(secret)
	st.setKey(st.mac(st.last[:0], keyPad)) // a PRF's output is no longer than its block: copied into the pad
	dst = st.mac(dst, signedOctets)
	st.wipe()
	return dst
}

// VerifyPSKAuth reports, in constant time, whether auth is the AUTH data of
// signedOctets under the shared secret.
func VerifyPSKAuth(prf message.PRFID, secret, signedOctets, auth []byte) (bool, error) {
	want, err := PSKAuth(prf, secret, signedOctets)
	if err != nil {
		return false, err
	}
	return hmac.Equal(want, auth), nil
}

// NATDetectionHash returns the data of a NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP notification (RFC 7296 §2.23):
// SHA-1(SPIi | SPIr | IP | Port), with the address in 4 octets for IPv4
// (an IPv4-mapped IPv6 address counts as IPv4) and 16 for IPv6. In an
// IKE_SA_INIT request SPIr is 0.
func NATDetectionHash(spii, spir uint64, ap netip.AddrPort) []byte {
	h := NATDetectionSum(spii, spir, ap)
	return h[:]
}

// NATDetectionSum is NATDetectionHash as an array, for comparing a
// received hash without an allocation.
func NATDetectionSum(spii, spir uint64, ap netip.AddrPort) [sha1.Size]byte {
	var b [8 + 8 + 16 + 2]byte
	binary.BigEndian.PutUint64(b[:8], spii)
	binary.BigEndian.PutUint64(b[8:16], spir)
	n := 16
	switch a := ap.Addr().Unmap(); {
	case a.Is4():
		a4 := a.As4()
		n += copy(b[n:], a4[:])
	case a.Is6():
		a16 := a.As16()
		n += copy(b[n:], a16[:])
	}
	binary.BigEndian.PutUint16(b[n:], ap.Port())
	return sha1.Sum(b[:n+2])
}
