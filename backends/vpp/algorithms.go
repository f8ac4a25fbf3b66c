//go:build vpp

package vpp

import (
	"encoding/binary"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/binapi/ipsec_types"
)

// VPP 25.10 names ciphers by key size (ipsec_crypto_alg) and carries the
// salt of counter-mode ciphers in a separate field. GCM is always the
// 16-byte-ICV variant, and there is no CCM, AES-XCBC or AES-CMAC.
var cryptoByKeyBits = map[kernelops.EncrID]map[int]ipsec_types.IpsecCryptoAlg{
	iana.EncrAESCBC: {
		128: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_CBC_128,
		192: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_CBC_192,
		256: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_CBC_256,
	},
	iana.EncrAESCTR: {
		128: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_CTR_128,
		192: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_CTR_192,
		256: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_CTR_256,
	},
	iana.EncrAESGCM16: {
		128: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_GCM_128,
		192: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_GCM_192,
		256: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_GCM_256,
	},
	iana.EncrNullAuthAESGMAC: {
		128: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_NULL_GMAC_128,
		192: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_NULL_GMAC_192,
		256: ipsec_types.IPSEC_API_CRYPTO_ALG_AES_NULL_GMAC_256,
	},
	iana.EncrDES3:             {0: ipsec_types.IPSEC_API_CRYPTO_ALG_3DES_CBC, 192: ipsec_types.IPSEC_API_CRYPTO_ALG_3DES_CBC},
	iana.EncrNull:             {0: ipsec_types.IPSEC_API_CRYPTO_ALG_NONE},
	iana.EncrChaCha20Poly1305: {0: ipsec_types.IPSEC_API_CRYPTO_ALG_CHACHA20_POLY1305, 256: ipsec_types.IPSEC_API_CRYPTO_ALG_CHACHA20_POLY1305},
}

var integByID = map[kernelops.IntegID]ipsec_types.IpsecIntegAlg{
	iana.IntegNone:           ipsec_types.IPSEC_API_INTEG_ALG_NONE,
	iana.IntegHMACMD5_96:     ipsec_types.IPSEC_API_INTEG_ALG_MD5_96,
	iana.IntegHMACSHA1_96:    ipsec_types.IPSEC_API_INTEG_ALG_SHA1_96,
	iana.IntegHMACSHA256_128: ipsec_types.IPSEC_API_INTEG_ALG_SHA_256_128,
	iana.IntegHMACSHA384_192: ipsec_types.IPSEC_API_INTEG_ALG_SHA_384_192,
	iana.IntegHMACSHA512_256: ipsec_types.IPSEC_API_INTEG_ALG_SHA_512_256,
}

// algorithms is what VPP 25.10's IPsec API can install. Whether a given
// VPP has a crypto engine for each is only known at add time (VPP answers
// UNIMPLEMENTED, which AddSA reports as ErrNotSupported).
func algorithms() kernelops.AlgorithmSet {
	return kernelops.AlgorithmSet{
		Encryption: []kernelops.EncrID{iana.EncrAESGCM16, iana.EncrAESCBC, iana.EncrAESCTR,
			iana.EncrChaCha20Poly1305, iana.EncrNullAuthAESGMAC, iana.EncrDES3, iana.EncrNull},
		Integrity: []kernelops.IntegID{iana.IntegHMACSHA256_128, iana.IntegHMACSHA384_192,
			iana.IntegHMACSHA512_256, iana.IntegHMACSHA1_96, iana.IntegHMACMD5_96},
	}
}

// vppCrypto splits keyplane's key (cipher key then salt, as IKE's KEYMAT
// lays it out) into VPP's algorithm, key and salt. The salt goes on the
// wire as its bytes in order: VPP stores the field unconverted and uses it
// as the nonce prefix.
func vppCrypto(e kernelops.Encryption) (ipsec_types.IpsecCryptoAlg, ipsec_types.Key, uint32, bool) {
	byBits, ok := cryptoByKeyBits[e.ID]
	if !ok {
		return 0, ipsec_types.Key{}, 0, false
	}
	alg, ok := byBits[e.KeyBits]
	if !ok {
		return 0, ipsec_types.Key{}, 0, false
	}
	info, _ := e.ID.Info()
	key := []byte(e.Key)
	var salt uint32
	if info.Salt > 0 && len(key) >= info.Salt {
		s := key[len(key)-info.Salt:]
		var b [4]byte
		copy(b[:], s)
		salt = binary.BigEndian.Uint32(b[:])
		key = key[:len(key)-info.Salt]
	}
	return alg, vppKey(key), salt, true
}

func vppKey(k []byte) ipsec_types.Key {
	return ipsec_types.Key{Length: uint8(len(k)), Data: append([]byte(nil), k...)}
}

// fromVPPCrypto maps VPP's algorithm, key and dumped salt back. VPP dumps
// the salt with htonl applied to the stored (unconverted) bytes, so on the
// little-endian hosts VPP runs on the salt's bytes come back reversed:
// they are the little-endian encoding of the decoded field.
func fromVPPCrypto(alg ipsec_types.IpsecCryptoAlg, key ipsec_types.Key, dumpedSalt uint32) kernelops.Encryption {
	for id, byBits := range cryptoByKeyBits {
		for bits, a := range byBits {
			if a != alg {
				continue
			}
			if id == iana.EncrDES3 || id == iana.EncrChaCha20Poly1305 {
				bits = 0
			}
			info, _ := id.Info()
			k := append(kernelops.Key(nil), keyBytes(key)...)
			if info.Salt == 4 {
				var b [4]byte
				binary.LittleEndian.PutUint32(b[:], dumpedSalt)
				k = append(k, b[:]...)
			}
			return kernelops.Encryption{ID: id, KeyBits: bits, Key: k}
		}
	}
	return kernelops.Encryption{}
}

func fromVPPInteg(alg ipsec_types.IpsecIntegAlg, key ipsec_types.Key) kernelops.Integrity {
	for id, a := range integByID {
		if a == alg {
			return kernelops.Integrity{ID: id, Key: append(kernelops.Key(nil), keyBytes(key)...)}
		}
	}
	return kernelops.Integrity{ID: kernelops.IntegID(0xffff)}
}

func keyBytes(k ipsec_types.Key) []byte {
	n := int(k.Length)
	if n > len(k.Data) {
		n = len(k.Data)
	}
	return k.Data[:n]
}
