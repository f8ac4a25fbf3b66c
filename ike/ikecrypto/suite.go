package ikecrypto

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/keyplane/keyplane/ike/message"
)

// ErrProposal is wrapped by errors about a proposal that does not make a
// usable suite (a missing, repeated or inconsistent transform).
var ErrProposal = errors.New("ikecrypto: unusable proposal")

// IKESuite is the transforms negotiated for an IKE SA.
type IKESuite struct {
	Encr message.EncrID
	// EncrKeyBits is the Key Length attribute: 128, 192 or 256 for AES; 0
	// (or 256) for ChaCha20-Poly1305.
	EncrKeyBits int
	// Integ is IntegNone with an AEAD cipher.
	Integ message.IntegID
	PRF   message.PRFID
	DH    message.DHGroup
	// AddKE are the additional key exchanges of RFC 9370, AddKE[0] for
	// ADDKE1; DHNone where there is none (or NONE was chosen).
	AddKE [7]message.DHGroup
}

// ChildSuite is the transforms negotiated for an ESP (or AH) Child SA.
type ChildSuite struct {
	Encr        message.EncrID
	EncrKeyBits int
	Integ       message.IntegID
	// DH is the PFS group, DHNone without PFS.
	DH  message.DHGroup
	ESN bool
	// AddKE are the additional key exchanges of RFC 9370 for PFS.
	AddKE [7]message.DHGroup
}

func (s IKESuite) String() string {
	return fmt.Sprintf("%v/%d-%v-%v-%v%s", s.Encr, s.EncrKeyBits, s.Integ, s.PRF, s.DH, addKEString(s.AddKE))
}

func addKEString(a [7]message.DHGroup) string {
	out := ""
	for i, g := range a {
		if g != message.DHNone {
			out += fmt.Sprintf("-ke%d_%v", i+1, g)
		}
	}
	return out
}

// AdditionalKEs returns the additional key exchange methods to run, in
// order (ADDKE1 first), without the empty ones.
func (s IKESuite) AdditionalKEs() []message.DHGroup { return nonNone(s.AddKE) }

// AdditionalKEs returns the additional key exchange methods to run, in
// order, without the empty ones.
func (s ChildSuite) AdditionalKEs() []message.DHGroup { return nonNone(s.AddKE) }

func nonNone(a [7]message.DHGroup) []message.DHGroup {
	var out []message.DHGroup
	for _, g := range a {
		if g != message.DHNone {
			out = append(out, g)
		}
	}
	return out
}

func checkAddKE(a [7]message.DHGroup) error {
	for _, g := range a {
		if g != message.DHNone && !SupportedKE(g) {
			return unsupported("additional key exchange", g)
		}
	}
	return nil
}

// Validate checks that the suite is supported and consistent.
func (s IKESuite) Validate() error {
	if s.Encr.AEAD() && isCCM(s.Encr) {
		// RFC 5282 defines CCM for the SK payload, but Go's standard
		// library has no CCM mode and keyplane carries none of its own.
		return unsupported("IKE encryption", s.Encr)
	}
	if _, err := encrKeyLen(s.Encr, s.EncrKeyBits); err != nil {
		return err
	}
	if err := checkInteg(s.Encr, s.Integ); err != nil {
		return err
	}
	if _, err := NewPRF(s.PRF); err != nil {
		return err
	}
	if !SupportedGroup(s.DH) {
		return unsupported("key exchange", s.DH)
	}
	return checkAddKE(s.AddKE)
}

// Validate checks that the suite is supported and consistent.
func (s ChildSuite) Validate() error {
	if _, err := encrKeyLen(s.Encr, s.EncrKeyBits); err != nil {
		return err
	}
	if err := checkInteg(s.Encr, s.Integ); err != nil {
		return err
	}
	if s.DH != message.DHNone && !SupportedGroup(s.DH) {
		return unsupported("key exchange", s.DH)
	}
	return checkAddKE(s.AddKE)
}

func checkInteg(e message.EncrID, i message.IntegID) error {
	if e.AEAD() {
		if i != message.IntegNone {
			return fmt.Errorf("%w: %v with integrity %v", ErrProposal, e, i)
		}
		return nil
	}
	if _, err := integKeyLen(i); err != nil {
		return err
	}
	return nil
}

// single returns the one transform of type t in p (ok false if there is
// none), and an error if there are several.
func single(p *message.Proposal, t message.TransformType) (message.Transform, bool, error) {
	var one message.Transform
	n := 0
	for _, x := range p.Transforms { // not p.Of: no slice per call (a handshake asks eight times)
		if x.Type == t {
			one = x
			n++
		}
	}
	switch n {
	case 0:
		return message.Transform{}, false, nil
	case 1:
		return one, true, nil
	}
	return message.Transform{}, false, fmt.Errorf("%w: %d transforms of type %v; a chosen proposal has one", ErrProposal, n, t)
}

// required is single for a transform type a chosen proposal must carry.
func required(p *message.Proposal, t message.TransformType, name string) (message.Transform, error) {
	tr, ok, err := single(p, t)
	if err == nil && !ok {
		err = fmt.Errorf("%w: no %s transform", ErrProposal, name)
	}
	return tr, err
}

// IKESuiteFromProposal reads the suite of a chosen IKE proposal (one
// transform of each type, as in a responder's SA payload) and validates it.
func IKESuiteFromProposal(p *message.Proposal) (IKESuite, error) {
	var s IKESuite
	if p.Protocol != message.ProtocolIKE {
		return s, fmt.Errorf("%w: protocol %v", ErrProposal, p.Protocol)
	}
	e, err := required(p, message.TransformENCR, "ENCR")
	if err != nil {
		return s, err
	}
	s.Encr, s.EncrKeyBits = message.EncrID(e.ID), int(e.KeyLength)
	if i, ok, err := single(p, message.TransformINTEG); err != nil {
		return s, err
	} else if ok {
		s.Integ = message.IntegID(i.ID)
	}
	pr, err := required(p, message.TransformPRF, "PRF")
	if err != nil {
		return s, err
	}
	s.PRF = message.PRFID(pr.ID)
	d, err := required(p, message.TransformKE, "KE")
	if err != nil {
		return s, err
	}
	s.DH = message.DHGroup(d.ID)
	if err := readAddKE(p, &s.AddKE); err != nil {
		return s, err
	}
	return s, s.Validate()
}

// readAddKE reads the ADDKE1..7 transforms of a chosen proposal.
func readAddKE(p *message.Proposal, a *[7]message.DHGroup) error {
	for n := 1; n <= 7; n++ {
		tr, ok, err := single(p, message.AddKE(n))
		if err != nil {
			return err
		}
		if ok {
			a[n-1] = message.DHGroup(tr.ID)
		}
	}
	return nil
}

// ChildSuiteFromProposal reads the suite of a chosen ESP or AH proposal and
// validates it.
func ChildSuiteFromProposal(p *message.Proposal) (ChildSuite, error) {
	var s ChildSuite
	if p.Protocol != message.ProtocolESP {
		return s, fmt.Errorf("%w: protocol %v (only ESP is supported)", ErrProposal, p.Protocol)
	}
	e, err := required(p, message.TransformENCR, "ENCR")
	if err != nil {
		return s, err
	}
	s.Encr, s.EncrKeyBits = message.EncrID(e.ID), int(e.KeyLength)
	if i, ok, err := single(p, message.TransformINTEG); err != nil {
		return s, err
	} else if ok {
		s.Integ = message.IntegID(i.ID)
	}
	if d, ok, err := single(p, message.TransformKE); err != nil {
		return s, err
	} else if ok {
		s.DH = message.DHGroup(d.ID)
	}
	if n, ok, err := single(p, message.TransformESN); err != nil {
		return s, err
	} else if ok {
		s.ESN = message.ESNID(n.ID) == message.ESNYes
	}
	if err := readAddKE(p, &s.AddKE); err != nil {
		return s, err
	}
	return s, s.Validate()
}

// aeadSaltLen is the salt appended to the key of GCM (RFC 4106 §8.1,
// RFC 5282 §7.1) and ChaCha20-Poly1305 (RFC 7634 §2, RFC 7634 §4).
const aeadSaltLen = 4

// ccmSaltLen is the salt appended to the key of AES-CCM (RFC 4309 §7.1).
const ccmSaltLen = 3

func isCCM(e message.EncrID) bool {
	return e == message.EncrAESCCM8 || e == message.EncrAESCCM12 || e == message.EncrAESCCM16
}

// encrKeyLen returns the octets of keying material of an encryption
// transform: the key, plus the salt of an AEAD (4 octets, 3 for CCM).
// AES-CCM is for ESP only: the kernel implements it (rfc4309(ccm(aes))),
// and IKESuite.Validate refuses it for the SK payload.
func encrKeyLen(e message.EncrID, bits int) (int, error) {
	switch e {
	case message.EncrAESCCM8, message.EncrAESCCM12, message.EncrAESCCM16:
		if bits != 128 && bits != 192 && bits != 256 {
			return 0, fmt.Errorf("%w: %v with key length %d", ErrProposal, e, bits)
		}
		return bits/8 + ccmSaltLen, nil
	case message.EncrAESGCM16:
		if bits != 128 && bits != 192 && bits != 256 {
			return 0, fmt.Errorf("%w: %v with key length %d", ErrProposal, e, bits)
		}
		return bits/8 + aeadSaltLen, nil
	case message.EncrAESCBC:
		if bits != 128 && bits != 192 && bits != 256 {
			return 0, fmt.Errorf("%w: %v with key length %d", ErrProposal, e, bits)
		}
		return bits / 8, nil
	case message.EncrChaCha20Poly1305:
		if bits != 0 && bits != 256 { // RFC 7634 §4: no Key Length attribute
			return 0, fmt.Errorf("%w: %v with key length %d", ErrProposal, e, bits)
		}
		return 32 + aeadSaltLen, nil
	}
	return 0, unsupported("encryption", e)
}

type integAlg struct {
	hash   func() hash.Hash
	keyLen int
	icvLen int
}

func integAlgorithm(i message.IntegID) (integAlg, error) {
	switch i {
	case message.IntegHMACSHA196: // RFC 2404, for legacy peers
		return integAlg{sha1.New, 20, 12}, nil
	case message.IntegHMACSHA2256128:
		return integAlg{sha256.New, 32, 16}, nil
	case message.IntegHMACSHA2384192:
		return integAlg{sha512.New384, 48, 24}, nil
	case message.IntegHMACSHA2512256:
		return integAlg{sha512.New, 64, 32}, nil
	}
	return integAlg{}, unsupported("integrity", i)
}

// integKeyLen is the key length of an integrity transform (RFC 4868 §2.1,
// RFC 2404 §3).
func integKeyLen(i message.IntegID) (int, error) {
	a, err := integAlgorithm(i)
	return a.keyLen, err
}

// KeyLengths returns the octets of keying material the suite needs per
// direction: the encryption key (salt included) and the integrity key (0 for
// an AEAD).
func (s IKESuite) KeyLengths() (encr, integ int, err error) {
	return keyLengths(s.Encr, s.EncrKeyBits, s.Integ)
}

// KeyLengths returns the octets of keying material the suite needs per
// direction: the encryption key (salt included) and the integrity key (0 for
// an AEAD).
func (s ChildSuite) KeyLengths() (encr, integ int, err error) {
	return keyLengths(s.Encr, s.EncrKeyBits, s.Integ)
}

func keyLengths(e message.EncrID, bits int, i message.IntegID) (int, int, error) {
	el, err := encrKeyLen(e, bits)
	if err != nil {
		return 0, 0, err
	}
	if err := checkInteg(e, i); err != nil {
		return 0, 0, err
	}
	if e.AEAD() {
		return el, 0, nil
	}
	il, err := integKeyLen(i)
	return el, il, err
}
