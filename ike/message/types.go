package message

import (
	"strconv"

	"github.com/keyplane/keyplane/iana"
)

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type=ExchangeType,PayloadType,ProtocolID,TransformType,IDType,AuthMethod,HashAlgorithm,CertEncoding,TSType -linecomment -output=types_string.go

// enumString names v from names, or kind(v) for a value without a name
// (NotifyType's hand-kept table; the types below are stringer's).
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
	IKE_SA_INIT        ExchangeType = 34 // IKE_SA_INIT
	IKE_AUTH           ExchangeType = 35 // IKE_AUTH
	CREATE_CHILD_SA    ExchangeType = 36 // CREATE_CHILD_SA
	INFORMATIONAL      ExchangeType = 37 // INFORMATIONAL
	IKE_SESSION_RESUME ExchangeType = 38 // IKE_SESSION_RESUME
	IKE_INTERMEDIATE   ExchangeType = 43 // IKE_INTERMEDIATE
	IKE_FOLLOWUP_KE    ExchangeType = 44 // IKE_FOLLOWUP_KE
)

// PayloadType is a Next Payload value (RFC 7296 §3.2; SKF: RFC 7383).
// PayloadNonce carries Ni and Nr.
type PayloadType uint8

// Payload types.
const (
	PayloadNone     PayloadType = 0  // NONE
	PayloadSA       PayloadType = 33 // SA
	PayloadKE       PayloadType = 34 // KE
	PayloadIDi      PayloadType = 35 // IDi
	PayloadIDr      PayloadType = 36 // IDr
	PayloadCERT     PayloadType = 37 // CERT
	PayloadCERTREQ  PayloadType = 38 // CERTREQ
	PayloadAUTH     PayloadType = 39 // AUTH
	PayloadNonce    PayloadType = 40 // Nonce
	PayloadNotify   PayloadType = 41 // N
	PayloadDelete   PayloadType = 42 // D
	PayloadVendorID PayloadType = 43 // V
	PayloadTSi      PayloadType = 44 // TSi
	PayloadTSr      PayloadType = 45 // TSr
	PayloadSK       PayloadType = 46 // SK
	PayloadCP       PayloadType = 47 // CP
	PayloadEAP      PayloadType = 48 // EAP
	PayloadSKF      PayloadType = 53 // SKF
)

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
	ProtocolNone ProtocolID = 0 // NONE
	ProtocolIKE  ProtocolID = 1 // IKE
	ProtocolAH   ProtocolID = 2 // AH
	ProtocolESP  ProtocolID = 3 // ESP
)

// TransformType is a transform's type (RFC 7296 §3.3.2, RFC 9370).
// TransformKE is "Diffie-Hellman group" in RFC 7296.
type TransformType uint8

// Transform types.
const (
	TransformENCR   TransformType = 1  // ENCR
	TransformPRF    TransformType = 2  // PRF
	TransformINTEG  TransformType = 3  // INTEG
	TransformKE     TransformType = 4  // KE
	TransformESN    TransformType = 5  // ESN
	TransformADDKE1 TransformType = 6  // ADDKE1
	TransformADDKE2 TransformType = 7  // ADDKE2
	TransformADDKE3 TransformType = 8  // ADDKE3
	TransformADDKE4 TransformType = 9  // ADDKE4
	TransformADDKE5 TransformType = 10 // ADDKE5
	TransformADDKE6 TransformType = 11 // ADDKE6
	TransformADDKE7 TransformType = 12 // ADDKE7
)

// TransformDH is RFC 7296's name for TransformKE.
const TransformDH = TransformKE

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
// type; the typed IDs below (EncrID, PRFID, IntegID, DHGroup, ESNID)
// convert to it, and Transform.ID holds it.
type TransformID uint16

// The transform IDs are IANA's, defined once in package iana (which
// kernelops uses too); the codec names them here so its callers need one
// import.
type (
	EncrID  = iana.EncrID  // Transform Type 1
	PRFID   = iana.PRFID   // Transform Type 2
	IntegID = iana.IntegID // Transform Type 3
	DHGroup = iana.DHGroup // Transform Type 4 (key exchange method)
	ESNID   = iana.ESNID   // Transform Type 5
)

// Encryption algorithms.
const (
	EncrDES3             = iana.EncrDES3
	EncrNull             = iana.EncrNull
	EncrAESCBC           = iana.EncrAESCBC
	EncrAESCTR           = iana.EncrAESCTR
	EncrAESCCM8          = iana.EncrAESCCM8
	EncrAESCCM12         = iana.EncrAESCCM12
	EncrAESCCM16         = iana.EncrAESCCM16
	EncrAESGCM8          = iana.EncrAESGCM8
	EncrAESGCM12         = iana.EncrAESGCM12
	EncrAESGCM16         = iana.EncrAESGCM16
	EncrNullAuthAESGMAC  = iana.EncrNullAuthAESGMAC
	EncrCamelliaCBC      = iana.EncrCamelliaCBC
	EncrChaCha20Poly1305 = iana.EncrChaCha20Poly1305
)

// Pseudorandom functions.
const (
	PRFHMACMD5     = iana.PRFHMACMD5
	PRFHMACSHA1    = iana.PRFHMACSHA1
	PRFAES128XCBC  = iana.PRFAES128XCBC
	PRFHMACSHA2256 = iana.PRFHMACSHA256
	PRFHMACSHA2384 = iana.PRFHMACSHA384
	PRFHMACSHA2512 = iana.PRFHMACSHA512
	PRFAES128CMAC  = iana.PRFAES128CMAC
)

// Integrity algorithms.
const (
	IntegNone           = iana.IntegNone
	IntegHMACMD596      = iana.IntegHMACMD5_96
	IntegHMACSHA196     = iana.IntegHMACSHA1_96
	IntegAESXCBC96      = iana.IntegAESXCBC96
	IntegAESCMAC96      = iana.IntegAESCMAC96
	IntegHMACSHA2256128 = iana.IntegHMACSHA256_128
	IntegHMACSHA2384192 = iana.IntegHMACSHA384_192
	IntegHMACSHA2512256 = iana.IntegHMACSHA512_256
)

// Key exchange methods.
const (
	DHNone       = iana.DHNone
	DHModp1024   = iana.DHModp1024
	DHModp1536   = iana.DHModp1536
	DHModp2048   = iana.DHModp2048
	DHModp3072   = iana.DHModp3072
	DHModp4096   = iana.DHModp4096
	DHModp6144   = iana.DHModp6144
	DHModp8192   = iana.DHModp8192
	DHECP256     = iana.DHECP256
	DHECP384     = iana.DHECP384
	DHECP521     = iana.DHECP521
	DHCurve25519 = iana.DHCurve25519
	DHCurve448   = iana.DHCurve448
	DHMLKEM512   = iana.DHMLKEM512
	DHMLKEM768   = iana.DHMLKEM768
	DHMLKEM1024  = iana.DHMLKEM1024
)

// Extended sequence numbers.
const (
	ESNNo  = iana.ESNNo
	ESNYes = iana.ESNYes
)

// AttributeType is a transform attribute type (RFC 7296 §3.3.5).
type AttributeType uint16

// AttrKeyLength is the Key Length attribute, in bits.
const AttrKeyLength AttributeType = 14

// IDType is the ID Type of an IDi/IDr payload (RFC 7296 §3.5; ID_FC_NAME:
// RFC 4595; ID_NULL: RFC 7619).
type IDType uint8

// Identification types.
const (
	IDIPv4Addr   IDType = 1  // ID_IPV4_ADDR
	IDFQDN       IDType = 2  // ID_FQDN
	IDRFC822Addr IDType = 3  // ID_RFC822_ADDR
	IDIPv6Addr   IDType = 5  // ID_IPV6_ADDR
	IDDerASN1DN  IDType = 9  // ID_DER_ASN1_DN
	IDDerASN1GN  IDType = 10 // ID_DER_ASN1_GN
	IDKeyID      IDType = 11 // ID_KEY_ID
	IDFCName     IDType = 12 // ID_FC_NAME
	IDNull       IDType = 13 // ID_NULL
)

// AuthMethod is an AUTH payload's Auth Method (RFC 7296 §3.8; generic
// secure password: RFC 6467; NULL: RFC 7619; digital signature: RFC 7427).
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASig           AuthMethod = 1  // RSA_SIG
	AuthSharedKeyMIC     AuthMethod = 2  // SHARED_KEY_MIC
	AuthDSSSig           AuthMethod = 3  // DSS_SIG
	AuthECDSA256         AuthMethod = 9  // ECDSA_SHA256_P256
	AuthECDSA384         AuthMethod = 10 // ECDSA_SHA384_P384
	AuthECDSA521         AuthMethod = 11 // ECDSA_SHA512_P521
	AuthGenericPassword  AuthMethod = 12 // GENERIC_SECURE_PASSWORD
	AuthNull             AuthMethod = 13 // NULL_AUTH
	AuthDigitalSignature AuthMethod = 14 // DIGITAL_SIGNATURE
)

// HashAlgorithm is an entry of the IANA "IKEv2 Hash Algorithms" registry,
// carried in SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4; IDENTITY: RFC 8420,
// for EdDSA).
type HashAlgorithm uint16

// Hash algorithms.
const (
	HashSHA1     HashAlgorithm = 1 // SHA1
	HashSHA2256  HashAlgorithm = 2 // SHA2_256
	HashSHA2384  HashAlgorithm = 3 // SHA2_384
	HashSHA2512  HashAlgorithm = 4 // SHA2_512
	HashIdentity HashAlgorithm = 5 // IDENTITY
)

// CertEncoding is the Cert Encoding of a CERT or CERTREQ payload (RFC 7296
// §3.6; OCSP content: RFC 4806; raw public key: RFC 7670). CertX509 is
// "X.509 Certificate - Signature".
type CertEncoding uint8

// Certificate encodings.
const (
	CertPKCS7         CertEncoding = 1  // PKCS7_WRAPPED_X509
	CertX509          CertEncoding = 4  // X509_CERTIFICATE_SIGNATURE
	CertCRL           CertEncoding = 7  // CRL
	CertRawRSAKey     CertEncoding = 11 // RAW_RSA_KEY
	CertHashURLX509   CertEncoding = 12 // HASH_AND_URL_X509
	CertHashURLBundle CertEncoding = 13 // HASH_AND_URL_X509_BUNDLE
	CertOCSPContent   CertEncoding = 14 // OCSP_CONTENT
	CertRawPublicKey  CertEncoding = 15 // RAW_PUBLIC_KEY
)

// TSType is a traffic selector's TS Type (RFC 7296 §3.13.1; FC: RFC 4595;
// security label: RFC 9478).
type TSType uint8

// Traffic selector types.
const (
	TSIPv4AddrRange TSType = 7  // TS_IPV4_ADDR_RANGE
	TSIPv6AddrRange TSType = 8  // TS_IPV6_ADDR_RANGE
	TSFCAddrRange   TSType = 9  // TS_FC_ADDR_RANGE
	TSSecLabel      TSType = 10 // TS_SECLABEL
)
