package kernelops

import "fmt"

// EncrID is an IKEv2 encryption transform id (IANA "Transform Type 1").
type EncrID uint16

const (
	EncrDES3             EncrID = 3
	EncrNull             EncrID = 11
	EncrAESCBC           EncrID = 12
	EncrAESCTR           EncrID = 13
	EncrAESCCM8          EncrID = 14
	EncrAESCCM12         EncrID = 15
	EncrAESCCM16         EncrID = 16
	EncrAESGCM8          EncrID = 18
	EncrAESGCM12         EncrID = 19
	EncrAESGCM16         EncrID = 20
	EncrNullAuthAESGMAC  EncrID = 21
	EncrChaCha20Poly1305 EncrID = 28
)

// IntegID is an IKEv2 integrity transform id (IANA "Transform Type 3").
type IntegID uint16

const (
	IntegNone           IntegID = 0
	IntegHMACMD5_96     IntegID = 1
	IntegHMACSHA1_96    IntegID = 2
	IntegAESXCBC96      IntegID = 5
	IntegAESCMAC96      IntegID = 8
	IntegHMACSHA256_128 IntegID = 12
	IntegHMACSHA384_192 IntegID = 13
	IntegHMACSHA512_256 IntegID = 14
)

// EncrInfo describes an encryption transform's key layout.
type EncrInfo struct {
	Name     string // IANA name
	KeyBits  []int  // allowed Key Length attribute values; nil: fixed size, no attribute
	FixedKey int    // key bytes when KeyBits is nil
	Salt     int    // salt/nonce bytes appended to the key
	ICVBits  int    // AEAD tag length; 0 for non-AEAD
	AEAD     bool   // carries its own integrity; Integrity must be IntegNone
	BlockLen int    // padding block size in bytes
}

var encrInfo = map[EncrID]EncrInfo{
	EncrDES3:             {Name: "ENCR_3DES", FixedKey: 24, BlockLen: 8},
	EncrNull:             {Name: "ENCR_NULL", FixedKey: 0, BlockLen: 4},
	EncrAESCBC:           {Name: "ENCR_AES_CBC", KeyBits: []int{128, 192, 256}, BlockLen: 16},
	EncrAESCTR:           {Name: "ENCR_AES_CTR", KeyBits: []int{128, 192, 256}, Salt: 4, BlockLen: 4},
	EncrAESCCM8:          {Name: "ENCR_AES_CCM_8", KeyBits: []int{128, 192, 256}, Salt: 3, ICVBits: 64, AEAD: true, BlockLen: 4},
	EncrAESCCM12:         {Name: "ENCR_AES_CCM_12", KeyBits: []int{128, 192, 256}, Salt: 3, ICVBits: 96, AEAD: true, BlockLen: 4},
	EncrAESCCM16:         {Name: "ENCR_AES_CCM_16", KeyBits: []int{128, 192, 256}, Salt: 3, ICVBits: 128, AEAD: true, BlockLen: 4},
	EncrAESGCM8:          {Name: "ENCR_AES_GCM_8", KeyBits: []int{128, 192, 256}, Salt: 4, ICVBits: 64, AEAD: true, BlockLen: 4},
	EncrAESGCM12:         {Name: "ENCR_AES_GCM_12", KeyBits: []int{128, 192, 256}, Salt: 4, ICVBits: 96, AEAD: true, BlockLen: 4},
	EncrAESGCM16:         {Name: "ENCR_AES_GCM_16", KeyBits: []int{128, 192, 256}, Salt: 4, ICVBits: 128, AEAD: true, BlockLen: 4},
	EncrNullAuthAESGMAC:  {Name: "ENCR_NULL_AUTH_AES_GMAC", KeyBits: []int{128, 192, 256}, Salt: 4, ICVBits: 128, AEAD: true, BlockLen: 4},
	EncrChaCha20Poly1305: {Name: "ENCR_CHACHA20_POLY1305", FixedKey: 32, Salt: 4, ICVBits: 128, AEAD: true, BlockLen: 4},
}

// Info returns the transform's key layout; ok is false for an id keyplane
// does not know.
func (e EncrID) Info() (EncrInfo, bool) {
	i, ok := encrInfo[e]
	return i, ok
}

func (e EncrID) String() string {
	if i, ok := encrInfo[e]; ok {
		return i.Name
	}
	return fmt.Sprintf("ENCR_%d", uint16(e))
}

// IsAEAD reports whether the cipher carries its own integrity.
func (e EncrID) IsAEAD() bool { return encrInfo[e].AEAD }

// KeyLen returns the length of Encryption.Key (cipher key plus salt) for
// keyBits, or an error naming what is wrong with keyBits.
func (e EncrID) KeyLen(keyBits int) (int, error) {
	i, ok := encrInfo[e]
	if !ok {
		return 0, fmt.Errorf("unknown encryption transform %d", uint16(e))
	}
	if i.KeyBits == nil {
		if keyBits != 0 && keyBits != i.FixedKey*8 {
			return 0, fmt.Errorf("%s has a fixed %d-bit key, not %d", i.Name, i.FixedKey*8, keyBits)
		}
		return i.FixedKey + i.Salt, nil
	}
	for _, b := range i.KeyBits {
		if b == keyBits {
			return keyBits/8 + i.Salt, nil
		}
	}
	return 0, fmt.Errorf("%s key length %d bits: want one of %v", i.Name, keyBits, i.KeyBits)
}

// IntegInfo describes an integrity transform.
type IntegInfo struct {
	Name     string
	KeyLen   int // bytes
	ICVBits  int // truncated output length
	HashName string
}

var integInfo = map[IntegID]IntegInfo{
	IntegNone:           {Name: "NONE"},
	IntegHMACMD5_96:     {Name: "AUTH_HMAC_MD5_96", KeyLen: 16, ICVBits: 96, HashName: "md5"},
	IntegHMACSHA1_96:    {Name: "AUTH_HMAC_SHA1_96", KeyLen: 20, ICVBits: 96, HashName: "sha1"},
	IntegAESXCBC96:      {Name: "AUTH_AES_XCBC_96", KeyLen: 16, ICVBits: 96},
	IntegAESCMAC96:      {Name: "AUTH_AES_CMAC_96", KeyLen: 16, ICVBits: 96},
	IntegHMACSHA256_128: {Name: "AUTH_HMAC_SHA2_256_128", KeyLen: 32, ICVBits: 128, HashName: "sha256"},
	IntegHMACSHA384_192: {Name: "AUTH_HMAC_SHA2_384_192", KeyLen: 48, ICVBits: 192, HashName: "sha384"},
	IntegHMACSHA512_256: {Name: "AUTH_HMAC_SHA2_512_256", KeyLen: 64, ICVBits: 256, HashName: "sha512"},
}

// Info returns the transform's layout; ok is false for an unknown id.
func (i IntegID) Info() (IntegInfo, bool) {
	v, ok := integInfo[i]
	return v, ok
}

func (i IntegID) String() string {
	if v, ok := integInfo[i]; ok {
		return v.Name
	}
	return fmt.Sprintf("AUTH_%d", uint16(i))
}

// AlgorithmSet lists what a dataplane can install.
type AlgorithmSet struct {
	Encryption []EncrID
	Integrity  []IntegID
}

// HasEncr reports whether e is in the set.
func (s AlgorithmSet) HasEncr(e EncrID) bool {
	for _, x := range s.Encryption {
		if x == e {
			return true
		}
	}
	return false
}

// HasInteg reports whether i is in the set (IntegNone always is).
func (s AlgorithmSet) HasInteg(i IntegID) bool {
	if i == IntegNone {
		return true
	}
	for _, x := range s.Integrity {
		if x == i {
			return true
		}
	}
	return false
}
