package ikecrypto

import (
	"crypto/mlkem"
	"fmt"

	"github.com/keyplane/keyplane/ike/message"
)

// KeyExchange is one key exchange in progress on the initiator's side of
// an exchange, for every method of the Key Exchange Methods registry this
// package implements (RFC 9370 §2.1 calls Diffie-Hellman groups and KEMs
// alike "key exchange methods"):
//
//   - a Diffie-Hellman group (*DH): PublicValue is the initiator's public
//     value, SharedSecret takes the responder's;
//   - a key encapsulation method (*KEM, ML-KEM): PublicValue is the
//     encapsulation key, SharedSecret decapsulates the responder's
//     ciphertext.
//
// The responder side is Respond, the same for both kinds.
type KeyExchange interface {
	// Method is the transform ID of the method.
	Method() message.DHGroup
	// PublicValue is the KE payload data the initiator sends.
	PublicValue() []byte
	// SharedSecret validates the responder's KE data and returns the shared
	// secret. Invalid data is a *PublicValueError.
	SharedSecret(responderData []byte) (Key, error)
	// String names the method and redacts the private key.
	String() string
}

// SupportedKE reports whether m is a key exchange method NewKeyExchange and
// Respond implement: the Diffie-Hellman groups of SupportedGroup, ML-KEM-768
// and ML-KEM-1024.
func SupportedKE(m message.DHGroup) bool {
	return SupportedGroup(m) || isKEM(m)
}

func isKEM(m message.DHGroup) bool { return m == message.DHMLKEM768 || m == message.DHMLKEM1024 }

// KEDataLen is the length of the KE payload data of method m sent by the
// initiator (initiator true) or by the responder: the same public value
// length both ways for a Diffie-Hellman group; the encapsulation key
// (1184 or 1568 octets) and the ciphertext (1088 or 1568 octets) for
// ML-KEM-768 and ML-KEM-1024 (FIPS 203 §8). 0 for an unsupported method.
func KEDataLen(m message.DHGroup, initiator bool) int {
	switch m {
	case message.DHMLKEM768:
		if initiator {
			return mlkem.EncapsulationKeySize768
		}
		return mlkem.CiphertextSize768
	case message.DHMLKEM1024:
		if initiator {
			return mlkem.EncapsulationKeySize1024
		}
		return mlkem.CiphertextSize1024
	}
	return PublicValueLen(m)
}

// NewKeyExchange starts a key exchange of method m as initiator: a fresh
// Diffie-Hellman private key, or a fresh ML-KEM decapsulation key.
func NewKeyExchange(m message.DHGroup) (KeyExchange, error) {
	if isKEM(m) {
		return NewKEM(m)
	}
	return NewDH(m)
}

// Respond completes a key exchange of method m as responder from the
// initiator's KE data: it returns the responder's KE data and the shared
// secret. For a Diffie-Hellman group that is a fresh public value and g^ir;
// for ML-KEM it encapsulates to the initiator's encapsulation key (which
// must pass FIPS 203's input check, §7.2) and returns the ciphertext and
// the shared key. Invalid initiator data is a *PublicValueError.
func Respond(m message.DHGroup, initiatorData []byte) ([]byte, Key, error) {
	switch m {
	case message.DHMLKEM768, message.DHMLKEM1024:
		if err := checkKEMData(m, initiatorData, true); err != nil {
			return nil, nil, err
		}
		var ss, ct []byte
		if m == message.DHMLKEM768 {
			ek, err := mlkem.NewEncapsulationKey768(initiatorData)
			if err != nil {
				return nil, nil, &PublicValueError{Group: m, Reason: err.Error()}
			}
			ss, ct = ek.Encapsulate()
		} else {
			ek, err := mlkem.NewEncapsulationKey1024(initiatorData)
			if err != nil {
				return nil, nil, &PublicValueError{Group: m, Reason: err.Error()}
			}
			ss, ct = ek.Encapsulate()
		}
		return ct, Key(ss), nil
	}
	if !SupportedGroup(m) {
		return nil, nil, unsupported("key exchange", m)
	}
	// Validate before generating a key, so a bad value costs nothing.
	if err := CheckPublicValue(m, initiatorData); err != nil {
		return nil, nil, err
	}
	d, err := NewDH(m)
	if err != nil {
		return nil, nil, err
	}
	s, err := d.SharedSecret(initiatorData)
	if err != nil {
		return nil, nil, err
	}
	return d.pub, s, nil
}

// KEM is the initiator's side of an ML-KEM key exchange (FIPS 203, used in
// IKEv2 as draft-ietf-ipsecme-ikev2-mlkem describes: the initiator sends
// the encapsulation key, the responder the ciphertext). Its String redacts.
type KEM struct {
	method message.DHGroup
	dk768  *mlkem.DecapsulationKey768
	dk1024 *mlkem.DecapsulationKey1024
	ek     []byte
}

// NewKEM generates a fresh ML-KEM-768 or ML-KEM-1024 decapsulation key.
func NewKEM(m message.DHGroup) (*KEM, error) {
	switch m {
	case message.DHMLKEM768:
		dk, err := mlkem.GenerateKey768()
		if err != nil {
			return nil, err
		}
		return &KEM{method: m, dk768: dk, ek: dk.EncapsulationKey().Bytes()}, nil
	case message.DHMLKEM1024:
		dk, err := mlkem.GenerateKey1024()
		if err != nil {
			return nil, err
		}
		return &KEM{method: m, dk1024: dk, ek: dk.EncapsulationKey().Bytes()}, nil
	}
	return nil, unsupported("key encapsulation", m)
}

// NewKEMFromSeed builds the state from the 64-octet seed d | z of FIPS 203
// (ML-KEM.KeyGen_internal). It is for known-answer tests.
func NewKEMFromSeed(m message.DHGroup, seed []byte) (*KEM, error) {
	switch m {
	case message.DHMLKEM768:
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			return nil, err
		}
		return &KEM{method: m, dk768: dk, ek: dk.EncapsulationKey().Bytes()}, nil
	case message.DHMLKEM1024:
		dk, err := mlkem.NewDecapsulationKey1024(seed)
		if err != nil {
			return nil, err
		}
		return &KEM{method: m, dk1024: dk, ek: dk.EncapsulationKey().Bytes()}, nil
	}
	return nil, unsupported("key encapsulation", m)
}

// Method returns the key exchange method.
func (k *KEM) Method() message.DHGroup { return k.method }

// PublicValue returns the encapsulation key, the initiator's KE data.
func (k *KEM) PublicValue() []byte { return append([]byte(nil), k.ek...) }

func (k *KEM) String() string { return fmt.Sprintf("KEM(%v, decapsulation key redacted)", k.method) }

// SharedSecret decapsulates the responder's ciphertext. A ciphertext of
// the right length always yields a key: ML-KEM rejects a forged one
// implicitly, with a key the responder does not have (FIPS 203 §6.3), so
// the failure shows when the next message does not authenticate.
func (k *KEM) SharedSecret(ct []byte) (Key, error) {
	if err := checkKEMData(k.method, ct, false); err != nil {
		return nil, err
	}
	var ss []byte
	var err error
	if k.dk768 != nil {
		ss, err = k.dk768.Decapsulate(ct)
	} else {
		ss, err = k.dk1024.Decapsulate(ct)
	}
	if err != nil {
		return nil, &PublicValueError{Group: k.method, Reason: err.Error()}
	}
	return Key(ss), nil
}

func checkKEMData(m message.DHGroup, b []byte, initiator bool) error {
	if want := KEDataLen(m, initiator); len(b) != want {
		what := "ciphertext"
		if initiator {
			what = "encapsulation key"
		}
		return &PublicValueError{Group: m, Reason: fmt.Sprintf("%s of %d octets, need %d", what, len(b), want)}
	}
	return nil
}

var (
	_ KeyExchange = (*DH)(nil)
	_ KeyExchange = (*KEM)(nil)
)
