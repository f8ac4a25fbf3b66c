package iana

// EncrID is an encryption transform ID (IANA "Transform Type 1").
type EncrID uint16

// Encryption algorithms.
const (
	EncrDES3             EncrID = 3  // ENCR_3DES
	EncrNull             EncrID = 11 // ENCR_NULL
	EncrAESCBC           EncrID = 12 // ENCR_AES_CBC
	EncrAESCTR           EncrID = 13 // ENCR_AES_CTR
	EncrAESCCM8          EncrID = 14 // ENCR_AES_CCM_8
	EncrAESCCM12         EncrID = 15 // ENCR_AES_CCM_12
	EncrAESCCM16         EncrID = 16 // ENCR_AES_CCM_16
	EncrAESGCM8          EncrID = 18 // ENCR_AES_GCM_8
	EncrAESGCM12         EncrID = 19 // ENCR_AES_GCM_12
	EncrAESGCM16         EncrID = 20 // ENCR_AES_GCM_16
	EncrNullAuthAESGMAC  EncrID = 21 // ENCR_NULL_AUTH_AES_GMAC
	EncrCamelliaCBC      EncrID = 23 // ENCR_CAMELLIA_CBC
	EncrChaCha20Poly1305 EncrID = 28 // ENCR_CHACHA20_POLY1305
)

// PRFID is a pseudorandom function transform ID (Transform Type 2).
type PRFID uint16

// Pseudorandom functions.
const (
	PRFHMACMD5    PRFID = 1 // PRF_HMAC_MD5
	PRFHMACSHA1   PRFID = 2 // PRF_HMAC_SHA1
	PRFAES128XCBC PRFID = 4 // PRF_AES128_XCBC
	PRFHMACSHA256 PRFID = 5 // PRF_HMAC_SHA2_256
	PRFHMACSHA384 PRFID = 6 // PRF_HMAC_SHA2_384
	PRFHMACSHA512 PRFID = 7 // PRF_HMAC_SHA2_512
	PRFAES128CMAC PRFID = 8 // PRF_AES128_CMAC
)

// IntegID is an integrity transform ID (Transform Type 3).
type IntegID uint16

// Integrity algorithms.
const (
	IntegNone           IntegID = 0  // NONE
	IntegHMACMD5_96     IntegID = 1  // AUTH_HMAC_MD5_96
	IntegHMACSHA1_96    IntegID = 2  // AUTH_HMAC_SHA1_96
	IntegAESXCBC96      IntegID = 5  // AUTH_AES_XCBC_96
	IntegAESCMAC96      IntegID = 8  // AUTH_AES_CMAC_96
	IntegHMACSHA256_128 IntegID = 12 // AUTH_HMAC_SHA2_256_128
	IntegHMACSHA384_192 IntegID = 13 // AUTH_HMAC_SHA2_384_192
	IntegHMACSHA512_256 IntegID = 14 // AUTH_HMAC_SHA2_512_256
)

// DHGroup is a key exchange method ID (Transform Type 4, "Diffie-Hellman
// group" in RFC 7296).
type DHGroup uint16

// Key exchange methods.
const (
	DHNone       DHGroup = 0  // NONE
	DHModp1024   DHGroup = 2  // MODP_1024
	DHModp1536   DHGroup = 5  // MODP_1536
	DHModp2048   DHGroup = 14 // MODP_2048
	DHModp3072   DHGroup = 15 // MODP_3072
	DHModp4096   DHGroup = 16 // MODP_4096
	DHModp6144   DHGroup = 17 // MODP_6144
	DHModp8192   DHGroup = 18 // MODP_8192
	DHECP256     DHGroup = 19 // ECP_256
	DHECP384     DHGroup = 20 // ECP_384
	DHECP521     DHGroup = 21 // ECP_521
	DHCurve25519 DHGroup = 31 // CURVE_25519
	DHCurve448   DHGroup = 32 // CURVE_448
	DHMLKEM512   DHGroup = 35 // ML_KEM_512
	DHMLKEM768   DHGroup = 36 // ML_KEM_768
	DHMLKEM1024  DHGroup = 37 // ML_KEM_1024
)

// ESNID is an extended sequence numbers transform ID (Transform Type 5).
type ESNID uint16

// Extended sequence numbers.
const (
	ESNNo  ESNID = 0 // NO_ESN
	ESNYes ESNID = 1 // ESN
)
