package iana

import (
	"errors"
	"fmt"
)

// EncrInfo is an encryption transform's key layout.
type EncrInfo struct {
	KeyBits  []int // allowed Key Length attribute values; nil: fixed size, no attribute
	FixedKey int   // key bytes when KeyBits is nil
	Salt     int   // salt/nonce bytes appended to the key (RFC 4106, 4309, 5282, 7634)
	ICVBits  int   // AEAD tag length; 0 for non-AEAD
	AEAD     bool  // carries its own integrity: negotiated without an INTEG transform
	BlockLen int   // padding block size in bytes
}

var aes = []int{128, 192, 256}

var encrInfo = map[EncrID]EncrInfo{
	EncrDES3:             {FixedKey: 24, BlockLen: 8},
	EncrNull:             {BlockLen: 4},
	EncrAESCBC:           {KeyBits: aes, BlockLen: 16},
	EncrAESCTR:           {KeyBits: aes, Salt: 4, BlockLen: 4},
	EncrAESCCM8:          {KeyBits: aes, Salt: 3, ICVBits: 64, AEAD: true, BlockLen: 4},
	EncrAESCCM12:         {KeyBits: aes, Salt: 3, ICVBits: 96, AEAD: true, BlockLen: 4},
	EncrAESCCM16:         {KeyBits: aes, Salt: 3, ICVBits: 128, AEAD: true, BlockLen: 4},
	EncrAESGCM8:          {KeyBits: aes, Salt: 4, ICVBits: 64, AEAD: true, BlockLen: 4},
	EncrAESGCM12:         {KeyBits: aes, Salt: 4, ICVBits: 96, AEAD: true, BlockLen: 4},
	EncrAESGCM16:         {KeyBits: aes, Salt: 4, ICVBits: 128, AEAD: true, BlockLen: 4},
	EncrNullAuthAESGMAC:  {KeyBits: aes, Salt: 4, ICVBits: 128, AEAD: true, BlockLen: 4},
	EncrChaCha20Poly1305: {FixedKey: 32, Salt: 4, ICVBits: 128, AEAD: true, BlockLen: 4},
}

// Info returns the transform's key layout; ok is false for one keyplane
// has no layout for.
func (e EncrID) Info() (EncrInfo, bool) {
	i, ok := encrInfo[e]
	return i, ok
}

// AEAD reports whether e is a combined-mode cipher, negotiated without an
// INTEG transform.
func (e EncrID) AEAD() bool { return encrInfo[e].AEAD }

// KeyLen returns the length of the keying material for e (cipher key
// plus salt, as IKE's KEYMAT lays it out) with Key Length attribute
// keyBits, or an error naming what is wrong with keyBits.
func (e EncrID) KeyLen(keyBits int) (int, error) {
	i, ok := encrInfo[e]
	if !ok {
		return 0, fmt.Errorf("unknown encryption transform %d", uint16(e))
	}
	if i.KeyBits == nil {
		if keyBits != 0 && keyBits != i.FixedKey*8 {
			return 0, fmt.Errorf("%s has a fixed %d-bit key, not %d", e, i.FixedKey*8, keyBits)
		}
		return i.FixedKey + i.Salt, nil
	}
	for _, b := range i.KeyBits {
		if b == keyBits {
			return keyBits/8 + i.Salt, nil
		}
	}
	return 0, fmt.Errorf("%s key length %d bits: want one of %v", e, keyBits, i.KeyBits)
}

// IntegInfo is an integrity transform's key and output sizes.
type IntegInfo struct {
	KeyLen   int // bytes
	ICVBits  int // truncated output length
	HashName string
}

var integInfo = map[IntegID]IntegInfo{
	IntegNone:           {},
	IntegHMACMD5_96:     {KeyLen: 16, ICVBits: 96, HashName: "md5"},
	IntegHMACSHA1_96:    {KeyLen: 20, ICVBits: 96, HashName: "sha1"},
	IntegAESXCBC96:      {KeyLen: 16, ICVBits: 96},
	IntegAESCMAC96:      {KeyLen: 16, ICVBits: 96},
	IntegHMACSHA256_128: {KeyLen: 32, ICVBits: 128, HashName: "sha256"},
	IntegHMACSHA384_192: {KeyLen: 48, ICVBits: 192, HashName: "sha384"},
	IntegHMACSHA512_256: {KeyLen: 64, ICVBits: 256, HashName: "sha512"},
}

// Info returns the transform's sizes; ok is false for an unknown id.
func (i IntegID) Info() (IntegInfo, bool) {
	v, ok := integInfo[i]
	return v, ok
}

// ErrUnknownName is returned by UnmarshalText for a name not in the
// registry subset above.
var ErrUnknownName = errors.New("unknown transform name")

// The IDs marshal as their IANA names, so JSON output reads like the
// registry, and unmarshal from the same names.

func (e EncrID) MarshalText() ([]byte, error) { return []byte(e.String()), nil }
func (e *EncrID) UnmarshalText(b []byte) (err error) {
	*e, err = parse[EncrID]("encryption", b)
	return
}
func (i IntegID) MarshalText() ([]byte, error) { return []byte(i.String()), nil }
func (i *IntegID) UnmarshalText(b []byte) (err error) {
	*i, err = parse[IntegID]("integrity", b)
	return
}

func parse[T ~uint16 | ~uint8](kind string, text []byte) (T, error) {
	s := string(text)
	for v := range 256 {
		if x := T(v); fmt.Sprint(x) == s {
			return x, nil
		}
	}
	return 0, fmt.Errorf("%s transform %q: %w", kind, s, ErrUnknownName)
}
