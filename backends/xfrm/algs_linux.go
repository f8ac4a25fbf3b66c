package xfrm

import (
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

// algKind says which XFRMA_ALG_* attribute carries an algorithm.
type algKind uint8

const (
	algCrypt algKind = iota + 1 // XFRMA_ALG_CRYPT, struct xfrm_algo
	algAEAD                     // XFRMA_ALG_AEAD, struct xfrm_algo_aead
	algAuth                     // XFRMA_ALG_AUTH_TRUNC, struct xfrm_algo_auth
)

// kernelAlg is the kernel's name for an IANA transform.
type kernelAlg struct {
	Name string
	Kind algKind
	ICV  int // AEAD ICV length or truncation length in bits
}

// encrAlgs maps IANA encryption transforms to the kernel's crypto API
// names as XFRM expects them (net/xfrm/xfrm_algo.c).
var encrAlgs = map[kernelops.EncrID]kernelAlg{
	iana.EncrDES3:             {"cbc(des3_ede)", algCrypt, 0},
	iana.EncrNull:             {"ecb(cipher_null)", algCrypt, 0},
	iana.EncrAESCBC:           {"cbc(aes)", algCrypt, 0},
	iana.EncrAESCTR:           {"rfc3686(ctr(aes))", algCrypt, 0},
	iana.EncrAESCCM8:          {"rfc4309(ccm(aes))", algAEAD, 64},
	iana.EncrAESCCM12:         {"rfc4309(ccm(aes))", algAEAD, 96},
	iana.EncrAESCCM16:         {"rfc4309(ccm(aes))", algAEAD, 128},
	iana.EncrAESGCM8:          {"rfc4106(gcm(aes))", algAEAD, 64},
	iana.EncrAESGCM12:         {"rfc4106(gcm(aes))", algAEAD, 96},
	iana.EncrAESGCM16:         {"rfc4106(gcm(aes))", algAEAD, 128},
	iana.EncrNullAuthAESGMAC:  {"rfc4543(gcm(aes))", algAEAD, 128},
	iana.EncrChaCha20Poly1305: {"rfc7539esp(chacha20,poly1305)", algAEAD, 128},
}

// integAlgs maps IANA integrity transforms; ICV is the truncation length.
var integAlgs = map[kernelops.IntegID]kernelAlg{
	iana.IntegHMACMD5_96:     {"hmac(md5)", algAuth, 96},
	iana.IntegHMACSHA1_96:    {"hmac(sha1)", algAuth, 96},
	iana.IntegAESXCBC96:      {"xcbc(aes)", algAuth, 96},
	iana.IntegAESCMAC96:      {"cmac(aes)", algAuth, 96},
	iana.IntegHMACSHA256_128: {"hmac(sha256)", algAuth, 128},
	iana.IntegHMACSHA384_192: {"hmac(sha384)", algAuth, 192},
	iana.IntegHMACSHA512_256: {"hmac(sha512)", algAuth, 256},
}

// Kernel aliases the kernel may report back for the same algorithm
// (xfrm_algo.c lists both the IANA-ish and the crypto API names).
var encrAliases = map[string]string{
	"des3_ede": "cbc(des3_ede)", "aes": "cbc(aes)", "cipher_null": "ecb(cipher_null)",
	"rfc7539esp(chacha20,poly1305)": "rfc7539esp(chacha20,poly1305)",
}

var integAliases = map[string]string{
	"md5": "hmac(md5)", "sha1": "hmac(sha1)", "sha256": "hmac(sha256)",
	"sha384": "hmac(sha384)", "sha512": "hmac(sha512)",
}

// encrByKernel finds the IANA id of a kernel cipher: name, kind and ICV
// length in bits (0 for non-AEAD) select it.
func encrByKernel(name string, icv int) (kernelops.EncrID, bool) {
	if a, ok := encrAliases[name]; ok {
		name = a
	}
	for id, a := range encrAlgs {
		if a.Name == name && a.ICV == icv {
			return id, true
		}
	}
	return 0, false
}

// integByKernel finds the IANA id of a kernel integrity algorithm.
func integByKernel(name string, trunc int) (kernelops.IntegID, bool) {
	if a, ok := integAliases[name]; ok {
		name = a
	}
	for id, a := range integAlgs {
		if a.Name == name && a.ICV == trunc {
			return id, true
		}
	}
	return 0, false
}

// allEncr and allInteg list what keyplane can map, in a stable order.
func allEncr() []kernelops.EncrID {
	return []kernelops.EncrID{
		iana.EncrAESGCM16, iana.EncrAESGCM12, iana.EncrAESGCM8,
		iana.EncrAESCBC, iana.EncrAESCTR,
		iana.EncrAESCCM16, iana.EncrAESCCM12, iana.EncrAESCCM8,
		iana.EncrChaCha20Poly1305, iana.EncrNullAuthAESGMAC,
		iana.EncrDES3, iana.EncrNull,
	}
}

func allInteg() []kernelops.IntegID {
	return []kernelops.IntegID{
		iana.IntegHMACSHA256_128, iana.IntegHMACSHA384_192, iana.IntegHMACSHA512_256,
		iana.IntegHMACSHA1_96, iana.IntegHMACMD5_96,
		iana.IntegAESXCBC96, iana.IntegAESCMAC96,
	}
}
