package message

import "strconv"

func enumString[T ~uint8 | ~uint16](names map[T]string, v T, kind string) string {
	if s, ok := names[v]; ok {
		return s
	}
	return kind + "(" + strconv.FormatUint(uint64(v), 10) + ")"
}

// ExchangeType is the IKE header's Exchange Type (RFC 7296 §3.1).
type ExchangeType uint8

// Exchange types.
const (
	IKE_SA_INIT        ExchangeType = 34
	IKE_AUTH           ExchangeType = 35
	CREATE_CHILD_SA    ExchangeType = 36
	INFORMATIONAL      ExchangeType = 37
	IKE_SESSION_RESUME ExchangeType = 38 // RFC 5723
	IKE_INTERMEDIATE   ExchangeType = 43 // RFC 9242
	IKE_FOLLOWUP_KE    ExchangeType = 44 // RFC 9370
)

var exchangeNames = map[ExchangeType]string{
	IKE_SA_INIT:        "IKE_SA_INIT",
	IKE_AUTH:           "IKE_AUTH",
	CREATE_CHILD_SA:    "CREATE_CHILD_SA",
	INFORMATIONAL:      "INFORMATIONAL",
	IKE_SESSION_RESUME: "IKE_SESSION_RESUME",
	IKE_INTERMEDIATE:   "IKE_INTERMEDIATE",
	IKE_FOLLOWUP_KE:    "IKE_FOLLOWUP_KE",
}

func (e ExchangeType) String() string { return enumString(exchangeNames, e, "ExchangeType") }

// PayloadType is a Next Payload value (RFC 7296 §3.2).
type PayloadType uint8

// Payload types.
const (
	PayloadNone     PayloadType = 0
	PayloadSA       PayloadType = 33
	PayloadKE       PayloadType = 34
	PayloadIDi      PayloadType = 35
	PayloadIDr      PayloadType = 36
	PayloadCERT     PayloadType = 37
	PayloadCERTREQ  PayloadType = 38
	PayloadAUTH     PayloadType = 39
	PayloadNonce    PayloadType = 40 // Ni and Nr
	PayloadNotify   PayloadType = 41
	PayloadDelete   PayloadType = 42
	PayloadVendorID PayloadType = 43
	PayloadTSi      PayloadType = 44
	PayloadTSr      PayloadType = 45
	PayloadSK       PayloadType = 46
	PayloadCP       PayloadType = 47
	PayloadEAP      PayloadType = 48
	PayloadSKF      PayloadType = 53 // RFC 7383
)

var payloadNames = map[PayloadType]string{
	PayloadNone:     "NONE",
	PayloadSA:       "SA",
	PayloadKE:       "KE",
	PayloadIDi:      "IDi",
	PayloadIDr:      "IDr",
	PayloadCERT:     "CERT",
	PayloadCERTREQ:  "CERTREQ",
	PayloadAUTH:     "AUTH",
	PayloadNonce:    "Nonce",
	PayloadNotify:   "N",
	PayloadDelete:   "D",
	PayloadVendorID: "V",
	PayloadTSi:      "TSi",
	PayloadTSr:      "TSr",
	PayloadSK:       "SK",
	PayloadCP:       "CP",
	PayloadEAP:      "EAP",
	PayloadSKF:      "SKF",
}

func (p PayloadType) String() string { return enumString(payloadNames, p, "PayloadType") }

// Known reports whether this package understands payload type p in the sense
// of RFC 7296 §2.5: a payload of a known type is accepted whatever its
// Critical bit says. Types 33 to 48 (RFC 7296) and SKF (RFC 7383) are known.
func (p PayloadType) Known() bool {
	return (p >= PayloadSA && p <= PayloadEAP) || p == PayloadSKF
}

// ProtocolID identifies the protocol of an SA, a notification or a delete
// (RFC 7296 §3.3.1).
type ProtocolID uint8

// Protocol IDs.
const (
	ProtocolNone ProtocolID = 0
	ProtocolIKE  ProtocolID = 1
	ProtocolAH   ProtocolID = 2
	ProtocolESP  ProtocolID = 3
)

var protocolNames = map[ProtocolID]string{
	ProtocolNone: "NONE",
	ProtocolIKE:  "IKE",
	ProtocolAH:   "AH",
	ProtocolESP:  "ESP",
}

func (p ProtocolID) String() string { return enumString(protocolNames, p, "ProtocolID") }

// TransformType is a transform's type (RFC 7296 §3.3.2, RFC 9370).
type TransformType uint8

// Transform types.
const (
	TransformENCR   TransformType = 1
	TransformPRF    TransformType = 2
	TransformINTEG  TransformType = 3
	TransformKE     TransformType = 4 // "Diffie-Hellman group" in RFC 7296
	TransformESN    TransformType = 5
	TransformADDKE1 TransformType = 6 // RFC 9370, up to ADDKE7 = 12
	TransformADDKE7 TransformType = 12
)

// TransformDH is RFC 7296's name for TransformKE.
const TransformDH = TransformKE

var transformTypeNames = map[TransformType]string{
	TransformENCR:  "ENCR",
	TransformPRF:   "PRF",
	TransformINTEG: "INTEG",
	TransformKE:    "KE",
	TransformESN:   "ESN",
	6:              "ADDKE1",
	7:              "ADDKE2",
	8:              "ADDKE3",
	9:              "ADDKE4",
	10:             "ADDKE5",
	11:             "ADDKE6",
	12:             "ADDKE7",
}

func (t TransformType) String() string { return enumString(transformTypeNames, t, "TransformType") }

// AddKE returns the n-th additional key exchange type, ADDKE1 to ADDKE7
// (RFC 9370 §2.2.1), or 0 for n outside 1..7.
func AddKE(n int) TransformType {
	if n < 1 || n > 7 {
		return 0
	}
	return TransformADDKE1 + TransformType(n-1)
}

// AddKEIndex returns n for ADDKEn, 0 for any other transform type.
func (t TransformType) AddKEIndex() int {
	if t < TransformADDKE1 || t > TransformADDKE7 {
		return 0
	}
	return int(t-TransformADDKE1) + 1
}

// TransformID is a transform's ID. Its meaning depends on the transform
// type; the typed constants below (EncrID, PRFID, IntegID, DHGroup, ESNID)
// convert to it, and Transform.ID holds it.
type TransformID uint16

// EncrID is a transform ID of type ENCR (IANA "Transform Type 1").
type EncrID uint16

// Encryption algorithms.
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
	EncrCamelliaCBC      EncrID = 23
	EncrChaCha20Poly1305 EncrID = 28 // RFC 7634
)

var encrNames = map[EncrID]string{
	EncrDES3:             "ENCR_3DES",
	EncrNull:             "ENCR_NULL",
	EncrAESCBC:           "ENCR_AES_CBC",
	EncrAESCTR:           "ENCR_AES_CTR",
	EncrAESCCM8:          "ENCR_AES_CCM_8",
	EncrAESCCM12:         "ENCR_AES_CCM_12",
	EncrAESCCM16:         "ENCR_AES_CCM_16",
	EncrAESGCM8:          "ENCR_AES_GCM_8",
	EncrAESGCM12:         "ENCR_AES_GCM_12",
	EncrAESGCM16:         "ENCR_AES_GCM_16",
	EncrNullAuthAESGMAC:  "ENCR_NULL_AUTH_AES_GMAC",
	EncrCamelliaCBC:      "ENCR_CAMELLIA_CBC",
	EncrChaCha20Poly1305: "ENCR_CHACHA20_POLY1305",
}

func (e EncrID) String() string { return enumString(encrNames, e, "ENCR") }

// AEAD reports whether e is a combined-mode (authenticated) cipher that is
// negotiated without an INTEG transform.
func (e EncrID) AEAD() bool {
	switch e {
	case EncrAESCCM8, EncrAESCCM12, EncrAESCCM16, EncrAESGCM8, EncrAESGCM12,
		EncrAESGCM16, EncrNullAuthAESGMAC, EncrChaCha20Poly1305:
		return true
	}
	return false
}

// PRFID is a transform ID of type PRF.
type PRFID uint16

// Pseudorandom functions.
const (
	PRFHMACMD5     PRFID = 1
	PRFHMACSHA1    PRFID = 2
	PRFAES128XCBC  PRFID = 4
	PRFHMACSHA2256 PRFID = 5
	PRFHMACSHA2384 PRFID = 6
	PRFHMACSHA2512 PRFID = 7
	PRFAES128CMAC  PRFID = 8
)

var prfNames = map[PRFID]string{
	PRFHMACMD5:     "PRF_HMAC_MD5",
	PRFHMACSHA1:    "PRF_HMAC_SHA1",
	PRFAES128XCBC:  "PRF_AES128_XCBC",
	PRFHMACSHA2256: "PRF_HMAC_SHA2_256",
	PRFHMACSHA2384: "PRF_HMAC_SHA2_384",
	PRFHMACSHA2512: "PRF_HMAC_SHA2_512",
	PRFAES128CMAC:  "PRF_AES128_CMAC",
}

func (p PRFID) String() string { return enumString(prfNames, p, "PRF") }

// IntegID is a transform ID of type INTEG.
type IntegID uint16

// Integrity algorithms.
const (
	IntegNone           IntegID = 0
	IntegHMACMD596      IntegID = 1
	IntegHMACSHA196     IntegID = 2
	IntegAESXCBC96      IntegID = 5
	IntegAESCMAC96      IntegID = 8
	IntegHMACSHA2256128 IntegID = 12
	IntegHMACSHA2384192 IntegID = 13
	IntegHMACSHA2512256 IntegID = 14
)

var integNames = map[IntegID]string{
	IntegNone:           "NONE",
	IntegHMACMD596:      "AUTH_HMAC_MD5_96",
	IntegHMACSHA196:     "AUTH_HMAC_SHA1_96",
	IntegAESXCBC96:      "AUTH_AES_XCBC_96",
	IntegAESCMAC96:      "AUTH_AES_CMAC_96",
	IntegHMACSHA2256128: "AUTH_HMAC_SHA2_256_128",
	IntegHMACSHA2384192: "AUTH_HMAC_SHA2_384_192",
	IntegHMACSHA2512256: "AUTH_HMAC_SHA2_512_256",
}

func (i IntegID) String() string { return enumString(integNames, i, "INTEG") }

// DHGroup is a transform ID of type KE (Diffie-Hellman group).
type DHGroup uint16

// Key exchange methods.
const (
	DHNone       DHGroup = 0
	DHModp1024   DHGroup = 2
	DHModp1536   DHGroup = 5
	DHModp2048   DHGroup = 14
	DHModp3072   DHGroup = 15
	DHModp4096   DHGroup = 16
	DHModp6144   DHGroup = 17
	DHModp8192   DHGroup = 18
	DHECP256     DHGroup = 19
	DHECP384     DHGroup = 20
	DHECP521     DHGroup = 21
	DHCurve25519 DHGroup = 31
	DHCurve448   DHGroup = 32
	DHMLKEM512   DHGroup = 35
	DHMLKEM768   DHGroup = 36
	DHMLKEM1024  DHGroup = 37
)

var dhNames = map[DHGroup]string{
	DHNone:       "NONE",
	DHModp1024:   "MODP_1024",
	DHModp1536:   "MODP_1536",
	DHModp2048:   "MODP_2048",
	DHModp3072:   "MODP_3072",
	DHModp4096:   "MODP_4096",
	DHModp6144:   "MODP_6144",
	DHModp8192:   "MODP_8192",
	DHECP256:     "ECP_256",
	DHECP384:     "ECP_384",
	DHECP521:     "ECP_521",
	DHCurve25519: "CURVE_25519",
	DHCurve448:   "CURVE_448",
	DHMLKEM512:   "ML_KEM_512",
	DHMLKEM768:   "ML_KEM_768",
	DHMLKEM1024:  "ML_KEM_1024",
}

func (g DHGroup) String() string { return enumString(dhNames, g, "DH") }

// ESNID is a transform ID of type ESN.
type ESNID uint16

// Extended sequence numbers.
const (
	ESNNo  ESNID = 0
	ESNYes ESNID = 1
)

func (e ESNID) String() string {
	return enumString(map[ESNID]string{ESNNo: "NO_ESN", ESNYes: "ESN"}, e, "ESN")
}

// AttributeType is a transform attribute type (RFC 7296 §3.3.5).
type AttributeType uint16

// AttrKeyLength is the Key Length attribute, in bits.
const AttrKeyLength AttributeType = 14

// IDType is the ID Type of an IDi/IDr payload (RFC 7296 §3.5).
type IDType uint8

// Identification types.
const (
	IDIPv4Addr   IDType = 1
	IDFQDN       IDType = 2
	IDRFC822Addr IDType = 3
	IDIPv6Addr   IDType = 5
	IDDerASN1DN  IDType = 9
	IDDerASN1GN  IDType = 10
	IDKeyID      IDType = 11
	IDFCName     IDType = 12 // RFC 4595
	IDNull       IDType = 13 // RFC 7619
)

var idNames = map[IDType]string{
	IDIPv4Addr:   "ID_IPV4_ADDR",
	IDFQDN:       "ID_FQDN",
	IDRFC822Addr: "ID_RFC822_ADDR",
	IDIPv6Addr:   "ID_IPV6_ADDR",
	IDDerASN1DN:  "ID_DER_ASN1_DN",
	IDDerASN1GN:  "ID_DER_ASN1_GN",
	IDKeyID:      "ID_KEY_ID",
	IDFCName:     "ID_FC_NAME",
	IDNull:       "ID_NULL",
}

func (t IDType) String() string { return enumString(idNames, t, "IDType") }

// AuthMethod is an AUTH payload's Auth Method (RFC 7296 §3.8).
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASig           AuthMethod = 1
	AuthSharedKeyMIC     AuthMethod = 2
	AuthDSSSig           AuthMethod = 3
	AuthECDSA256         AuthMethod = 9
	AuthECDSA384         AuthMethod = 10
	AuthECDSA521         AuthMethod = 11
	AuthGenericPassword  AuthMethod = 12 // RFC 6467
	AuthNull             AuthMethod = 13 // RFC 7619
	AuthDigitalSignature AuthMethod = 14 // RFC 7427
)

var authNames = map[AuthMethod]string{
	AuthRSASig:           "RSA_SIG",
	AuthSharedKeyMIC:     "SHARED_KEY_MIC",
	AuthDSSSig:           "DSS_SIG",
	AuthECDSA256:         "ECDSA_SHA256_P256",
	AuthECDSA384:         "ECDSA_SHA384_P384",
	AuthECDSA521:         "ECDSA_SHA512_P521",
	AuthGenericPassword:  "GENERIC_SECURE_PASSWORD",
	AuthNull:             "NULL_AUTH",
	AuthDigitalSignature: "DIGITAL_SIGNATURE",
}

func (m AuthMethod) String() string { return enumString(authNames, m, "AuthMethod") }

// HashAlgorithm is an entry of the IANA "IKEv2 Hash Algorithms" registry,
// carried in SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4).
type HashAlgorithm uint16

// Hash algorithms.
const (
	HashSHA1     HashAlgorithm = 1
	HashSHA2256  HashAlgorithm = 2
	HashSHA2384  HashAlgorithm = 3
	HashSHA2512  HashAlgorithm = 4
	HashIdentity HashAlgorithm = 5 // RFC 8420, for EdDSA
)

var hashNames = map[HashAlgorithm]string{
	HashSHA1: "SHA1", HashSHA2256: "SHA2_256", HashSHA2384: "SHA2_384",
	HashSHA2512: "SHA2_512", HashIdentity: "IDENTITY",
}

func (a HashAlgorithm) String() string { return enumString(hashNames, a, "HASH") }

// CertEncoding is the Cert Encoding of a CERT or CERTREQ payload (RFC 7296
// §3.6).
type CertEncoding uint8

// Certificate encodings.
const (
	CertPKCS7         CertEncoding = 1
	CertX509          CertEncoding = 4 // X.509 Certificate - Signature
	CertCRL           CertEncoding = 7
	CertRawRSAKey     CertEncoding = 11
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
	CertOCSPContent   CertEncoding = 14 // RFC 4806
	CertRawPublicKey  CertEncoding = 15 // RFC 7670
)

var certEncNames = map[CertEncoding]string{
	CertPKCS7: "PKCS7_WRAPPED_X509", CertX509: "X509_CERTIFICATE_SIGNATURE", CertCRL: "CRL",
	CertRawRSAKey: "RAW_RSA_KEY", CertHashURLX509: "HASH_AND_URL_X509", CertHashURLBundle: "HASH_AND_URL_X509_BUNDLE",
	CertOCSPContent: "OCSP_CONTENT", CertRawPublicKey: "RAW_PUBLIC_KEY",
}

func (e CertEncoding) String() string { return enumString(certEncNames, e, "CertEncoding") }

// TSType is a traffic selector's TS Type (RFC 7296 §3.13.1).
type TSType uint8

// Traffic selector types.
const (
	TSIPv4AddrRange TSType = 7
	TSIPv6AddrRange TSType = 8
	TSFCAddrRange   TSType = 9  // RFC 4595
	TSSecLabel      TSType = 10 // RFC 9478
)

var tsNames = map[TSType]string{
	TSIPv4AddrRange: "TS_IPV4_ADDR_RANGE",
	TSIPv6AddrRange: "TS_IPV6_ADDR_RANGE",
	TSFCAddrRange:   "TS_FC_ADDR_RANGE",
	TSSecLabel:      "TS_SECLABEL",
}

func (t TSType) String() string { return enumString(tsNames, t, "TSType") }
