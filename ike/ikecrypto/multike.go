package ikecrypto

import (
	"encoding/binary"
	"fmt"

	"github.com/keyplane/keyplane/ike/message"
)

// Multiple key exchanges (RFC 9370) and the IKE_INTERMEDIATE exchange
// (RFC 9242): the key derivations and the authentication of the
// intermediate messages, as pure functions. The engine keeps the state.

// DeriveIntermediateIKEKeys returns the keys of the IKE SA after the
// additional key exchange n of IKE_INTERMEDIATE has given the shared
// secret sk (RFC 9370 §2.2.2):
//
//	SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)
//	{SK_d(n) | SK_ai(n) | SK_ar(n) | SK_ei(n) | SK_er(n) | SK_pi(n) | SK_pr(n)}
//	         = prf+ (SKEYSEED(n), Ni | Nr | SPIi | SPIr)
//
// prev are the keys in force so far (those of IKE_SA_INIT, or of the
// previous additional exchange); the nonces and SPIs are IKE_SA_INIT's.
func DeriveIntermediateIKEKeys(prev *IKEKeys, sk, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	s := prev.Suite
	if err := s.Validate(); err != nil {
		return nil, err
	}
	p, err := NewPRF(s.PRF)
	if err != nil {
		return nil, err
	}
	seed := Key(p.Sum(prev.SKd(), sk, ni, nr))
	return ikeKeysFromSkeyseed(s, seed, ni, nr, spii, spir)
}

// DeriveRekeyedIKEKeysMulti is DeriveRekeyedIKEKeys for an IKE SA rekey
// with additional key exchanges (RFC 9370 §2.2.4):
//
//	SKEYSEED = prf(SK_d (old), SK(0) | Ni | Nr | SK(1) | ... | SK(n))
//
// where SK(0) is gir, the secret of the CREATE_CHILD_SA's own KE payload,
// and SK(1) to SK(n) those of the IKE_FOLLOWUP_KE exchanges, in order;
// Ni and Nr are the CREATE_CHILD_SA's nonces.
func DeriveRekeyedIKEKeysMulti(s IKESuite, oldPRF message.PRFID, oldSKd, gir, ni, nr []byte, add [][]byte, spii, spir uint64) (*IKEKeys, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	p, err := NewPRF(oldPRF)
	if err != nil {
		return nil, err
	}
	data := append([][]byte{gir, ni, nr}, add...)
	seed := Key(p.Sum(oldSKd, data...))
	return ikeKeysFromSkeyseed(s, seed, ni, nr, spii, spir)
}

// DeriveChildKeysMulti is DeriveChildKeys for a Child SA created or
// rekeyed with additional key exchanges (RFC 9370 §2.2.4):
//
//	KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
//
// gir (SK(0)) may be nil when the exchange had no KE payload of its own.
func DeriveChildKeysMulti(prf message.PRFID, skd []byte, s ChildSuite, gir, ni, nr []byte, add [][]byte) (*ChildKeys, error) {
	n := len(ni) + len(nr)
	for _, a := range add {
		n += len(a)
	}
	nonces := make([]byte, 0, n)
	nonces = append(append(nonces, ni...), nr...)
	for _, a := range add {
		nonces = append(nonces, a...)
	}
	// DeriveChildKeys computes prf+(SK_d, gir | ni | nr); with the
	// additional secrets appended to nr the input is the same octets.
	return DeriveChildKeys(prf, skd, s, gir, nonces, nil)
}

// IntAuth returns IntAuth_iN or IntAuth_rN of RFC 9242 §3.3.2:
//
//	IntAuth_[i|r]N = prf(SK_p[i|r]N, IntAuth_[i|r](N-1) | IntAuth_[i|r]N_A | IntAuth_[i|r]N_P)
//
// skp is SK_pi for the initiator's IKE_INTERMEDIATE message (SK_pr for the
// responder's) of the keys that protected it, prev the previous value of
// the same side (nil for the first), octets the message's A | P
// (message.Message.IntAuthOctets, or IntAuthOctetsOfFragments).
func IntAuth(prf message.PRFID, skp, prev, octets []byte) ([]byte, error) {
	p, err := NewPRF(prf)
	if err != nil {
		return nil, err
	}
	return p.Sum(skp, prev, octets), nil
}

// AppendIntAuth appends to the signed octets of IKE_AUTH (SignedOctets) the
// IntAuth part of RFC 9242 §3.3.2, for an IKE SA that had IKE_INTERMEDIATE
// exchanges, on both sides alike:
//
//	InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI | IntAuth
//	ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR | IntAuth
//	IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID
//
// ikeAuthMID is the Message ID of the first IKE_AUTH request.
func AppendIntAuth(signed, intAuthI, intAuthR []byte, ikeAuthMID uint32) ([]byte, error) {
	if len(intAuthI) == 0 || len(intAuthR) == 0 {
		return nil, fmt.Errorf("ikecrypto: IntAuth of %d and %d octets; both sides must have one", len(intAuthI), len(intAuthR))
	}
	out := make([]byte, 0, len(signed)+len(intAuthI)+len(intAuthR)+4)
	out = append(append(append(out, signed...), intAuthI...), intAuthR...)
	return binary.BigEndian.AppendUint32(out, ikeAuthMID), nil
}
