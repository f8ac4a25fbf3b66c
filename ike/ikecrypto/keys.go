package ikecrypto

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"

	"github.com/keyplane/keyplane/ike/message"
)

// IKEKeys are the keys of an IKE SA (RFC 7296 §2.14). SK_ei and SK_er
// include the 4-octet salt for an AEAD cipher (RFC 5282 §7.1); SK_ai and
// SK_ar are empty then. Printing an IKEKeys shows no key bytes.
//
// The seven keys lie one after another in km, as prf+ makes them, and are
// read through methods: one slice and seven ends are 80 octets where
// seven slices were 208, at two IKE SA ends per tunnel.
type IKEKeys struct {
	Suite IKESuite
	km    Key       // SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr
	end   [7]uint16 // where each key ends in km
}

// The keys in km's order.
const (
	skD = iota
	skAi
	skAr
	skEi
	skEr
	skPi
	skPr
)

// NewIKEKeys makes IKE keys of suite s from copies of the seven keys,
// which may be 65,535 octets together (prf+ makes a few hundred).
func NewIKEKeys(s IKESuite, d, ai, ar, ei, er, pi, pr []byte) (*IKEKeys, error) {
	k := &IKEKeys{Suite: s}
	for i, x := range [...][]byte{d, ai, ar, ei, er, pi, pr} {
		k.km = append(k.km, x...)
		if len(k.km) > math.MaxUint16 {
			return nil, fmt.Errorf("IKE keys: %d octets or more, over 65,535", len(k.km))
		}
		k.end[i] = uint16(len(k.km))
	}
	return k, nil
}

// key is the i-th key in km's order (capped: appending to it copies).
func (k *IKEKeys) key(i int) Key {
	start := 0
	if i > 0 {
		start = int(k.end[i-1])
	}
	return k.km[start:k.end[i]:k.end[i]]
}

func (k *IKEKeys) SKd() Key  { return k.key(skD) }
func (k *IKEKeys) SKai() Key { return k.key(skAi) }
func (k *IKEKeys) SKar() Key { return k.key(skAr) }
func (k *IKEKeys) SKei() Key { return k.key(skEi) }
func (k *IKEKeys) SKer() Key { return k.key(skEr) }
func (k *IKEKeys) SKpi() Key { return k.key(skPi) }
func (k *IKEKeys) SKpr() Key { return k.key(skPr) }

// Skeyseed returns SKEYSEED = prf(Ni | Nr, g^ir) for a new IKE SA
// (RFC 7296 §2.14). For the HMAC PRFs the whole nonces are the key.
func Skeyseed(prf message.PRFID, ni, nr, gir []byte) (Key, error) {
	p, err := NewPRF(prf)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 0, len(ni)+len(nr))
	key = append(append(key, ni...), nr...)
	return Key(p.Sum(key, gir)), nil
}

// RekeySkeyseed returns SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
// for an IKE SA rekeyed with CREATE_CHILD_SA (RFC 7296 §2.18), with the old
// IKE SA's PRF.
func RekeySkeyseed(oldPRF message.PRFID, oldSKd, gir, ni, nr []byte) (Key, error) {
	p, err := NewPRF(oldPRF)
	if err != nil {
		return nil, err
	}
	return Key(p.Sum(oldSKd, gir, ni, nr)), nil
}

// DeriveIKEKeys computes the keys of a new IKE SA from the shared secret
// g^ir, the nonces (the Nonce payload data) and the SPIs (RFC 7296 §2.14):
//
//	SKEYSEED = prf(Ni | Nr, g^ir)
//	{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//	         = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
func DeriveIKEKeys(s IKESuite, gir, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	seed, err := Skeyseed(s.PRF, ni, nr, gir)
	if err != nil {
		return nil, err
	}
	return ikeKeysFromSkeyseed(s, seed, ni, nr, spii, spir)
}

// DeriveRekeyedIKEKeys computes the keys of the new IKE SA of an IKE SA
// rekey (RFC 7296 §2.18): SKEYSEED from the old SA's PRF and SK_d, then the
// keys as in DeriveIKEKeys with the new suite's PRF. ni, nr and the SPIs are
// those of the CREATE_CHILD_SA exchange and the new SA.
func DeriveRekeyedIKEKeys(s IKESuite, oldPRF message.PRFID, oldSKd, gir, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	seed, err := RekeySkeyseed(oldPRF, oldSKd, gir, ni, nr)
	if err != nil {
		return nil, err
	}
	return ikeKeysFromSkeyseed(s, seed, ni, nr, spii, spir)
}

func ikeKeysFromSkeyseed(s IKESuite, seed Key, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	defer seed.Zero()
	p, err := NewPRF(s.PRF)
	if err != nil {
		return nil, err
	}
	el, il, err := s.KeyLengths()
	if err != nil {
		return nil, err
	}
	ps := p.Size()
	S := make([]byte, 0, len(ni)+len(nr)+16)
	S = append(append(S, ni...), nr...)
	S = binary.BigEndian.AppendUint64(S, spii)
	S = binary.BigEndian.AppendUint64(S, spir)
	km, err := p.Plus(seed, S, 3*ps+2*il+2*el)
	if err != nil {
		return nil, err
	}
	k := &IKEKeys{Suite: s, km: km}
	at := 0
	for i, n := range [...]int{ps, il, il, el, el, ps, ps} {
		at += n
		k.end[i] = uint16(at)
	}
	return k, nil
}

// DropAuthKeys lets go of SK_pi and SK_pr once IKE_AUTH is done: only the
// AUTH payloads (and IKE_INTERMEDIATE's) are computed with them. The other
// keys move to an allocation of their own and the old one is wiped (with
// AES-GCM-128 and HMAC-SHA-256's PRF: 72 octets kept instead of 136).
// SKpi and SKpr are empty after it.
func (k *IKEKeys) DropAuthKeys() {
	n := int(k.end[skEr])
	if n == len(k.km) {
		return
	}
	km := make(Key, n)
	copy(km, k.km[:n])
	k.km.Zero()
	k.km = km
	k.end[skPi], k.end[skPr] = uint16(n), uint16(n)
}

// Ciphers returns the Encrypted payload ciphers of the IKE SA for one side:
// out protects what this side sends, in checks what it receives. The
// initiator sends with SK_ei/SK_ai, the responder with SK_er/SK_ar. They
// start idle (see Idle): for an IKE SA that is already established (a
// rekey's, a restored one).
func (k *IKEKeys) Ciphers(initiator bool) (out, in message.Cipher, err error) {
	out, in, err = k.ciphers(initiator)
	if err == nil {
		Idle(out)
		Idle(in)
	}
	return out, in, err
}

// HandshakeCiphers is Ciphers for an IKE SA whose IKE_AUTH is still to
// come: they keep what makes each message quick until Idle.
func (k *IKEKeys) HandshakeCiphers(initiator bool) (out, in message.Cipher, err error) {
	return k.ciphers(initiator)
}

func (k *IKEKeys) ciphers(initiator bool) (out, in message.Cipher, err error) {
	i, err := newCipher(k.Suite.Encr, k.Suite.EncrKeyBits, k.SKei(), k.Suite.Integ, k.SKai())
	if err != nil {
		return nil, nil, err
	}
	r, err := newCipher(k.Suite.Encr, k.Suite.EncrKeyBits, k.SKer(), k.Suite.Integ, k.SKar())
	if err != nil {
		return nil, nil, err
	}
	if initiator {
		return i, r, nil
	}
	return r, i, nil
}

// String shows the suite and no key material.
func (k IKEKeys) String() string {
	return fmt.Sprintf("IKEKeys(%v, redacted)", k.Suite)
}

// Format prints String for every verb: km is unexported, so fmt would
// print its bytes rather than call Key's Format.
func (k IKEKeys) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// GoString is String (%#v).
func (k IKEKeys) GoString() string { return k.String() }

// LogValue is String.
func (k IKEKeys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Zero overwrites all keys.
func (k *IKEKeys) Zero() { k.km.Zero() }

// ChildKeys are the keys of a Child SA pair (RFC 7296 §2.17). The
// encryption keys of an AEAD include the 4-octet salt at the end, which is
// how Linux XFRM (rfc4106(gcm(aes)), rfc7539esp(chacha20,poly1305)) and
// PF_KEY take them. Integ keys are empty for an AEAD.
type ChildKeys struct {
	Suite ChildSuite
	// EncrI and IntegI protect traffic from the initiator to the responder
	// (the responder's inbound SA); EncrR and IntegR the other direction.
	EncrI, IntegI Key
	EncrR, IntegR Key
}

// String shows the suite and no key material.
func (k *ChildKeys) String() string {
	return fmt.Sprintf("ChildKeys(%v/%d-%v, redacted)", k.Suite.Encr, k.Suite.EncrKeyBits, k.Suite.Integ)
}

// Zero overwrites all keys.
func (k *ChildKeys) Zero() {
	for _, x := range []Key{k.EncrI, k.IntegI, k.EncrR, k.IntegR} {
		x.Zero()
	}
}

// DeriveChildKeys computes the keys of a Child SA (RFC 7296 §2.17):
//
//	KEYMAT = prf+(SK_d, Ni | Nr)                  without PFS
//	KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)     with PFS (gir non-nil)
//
// taken in the order encryption key then integrity key for the
// initiator-to-responder SA, then the same for the other direction. prf and
// SK_d are the IKE SA's; ni and nr are the nonces of the exchange that
// creates the Child SA (IKE_AUTH reuses those of IKE_SA_INIT).
func DeriveChildKeys(prf message.PRFID, skd []byte, s ChildSuite, gir, ni, nr []byte) (*ChildKeys, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	p, err := NewPRF(prf)
	if err != nil {
		return nil, err
	}
	el, il, err := s.KeyLengths()
	if err != nil {
		return nil, err
	}
	S := make([]byte, 0, len(gir)+len(ni)+len(nr))
	S = append(append(append(S, gir...), ni...), nr...)
	km, err := p.Plus(skd, S, 2*(el+il))
	if err != nil {
		return nil, err
	}
	next := func(n int) Key {
		out := km[:n:n]
		km = km[n:]
		return out
	}
	k := &ChildKeys{Suite: s}
	k.EncrI = next(el)
	k.IntegI = next(il)
	k.EncrR = next(el)
	k.IntegR = next(il)
	return k, nil
}
