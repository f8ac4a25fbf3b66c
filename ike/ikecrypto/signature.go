package ikecrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyplane/keyplane/ike/message"
)

// Public key AUTH (RFC 7296 §2.15, §3.8): the Digital Signature method of
// RFC 7427 (AUTH method 14) with RSASSA-PSS, RSASSA-PKCS1-v1_5, ECDSA and
// Ed25519 (RFC 8420), and the classic methods 1 (RSA) and 9 to 11 (ECDSA,
// RFC 4754) for peers without RFC 7427.

// Scheme is one signature scheme an AUTH payload can carry.
type Scheme uint8

// Signature schemes.
const (
	// RSAClassic is AUTH method 1: RSASSA-PKCS1-v1_5 over SHA-1, as IKEv2
	// implementations compute it (RFC 7296 §3.8, RFC 4718 §3.2).
	RSAClassic Scheme = iota + 1
	// ECDSAClassic256, 384 and 521 are AUTH methods 9, 10 and 11: ECDSA
	// with SHA-256 on P-256, SHA-384 on P-384, SHA-512 on P-521, the
	// signature as r | s (RFC 4754).
	ECDSAClassic256
	ECDSAClassic384
	ECDSAClassic521
	// The schemes of AUTH method 14 (RFC 7427).
	RSAPKCS1SHA1
	RSAPKCS1SHA256
	RSAPKCS1SHA384
	RSAPKCS1SHA512
	RSAPSSSHA256
	RSAPSSSHA384
	RSAPSSSHA512
	ECDSASHA1
	ECDSASHA256
	ECDSASHA384
	ECDSASHA512
	Ed25519 // RFC 8420, hash algorithm Identity
	maxScheme
)

var schemeNames = [...]string{
	RSAClassic: "RSA_SIG (PKCS#1 v1.5, SHA-1)", ECDSAClassic256: "ECDSA_SHA256_P256",
	ECDSAClassic384: "ECDSA_SHA384_P384", ECDSAClassic521: "ECDSA_SHA512_P521",
	RSAPKCS1SHA1: "sha1WithRSAEncryption", RSAPKCS1SHA256: "sha256WithRSAEncryption",
	RSAPKCS1SHA384: "sha384WithRSAEncryption", RSAPKCS1SHA512: "sha512WithRSAEncryption",
	RSAPSSSHA256: "RSASSA-PSS with SHA-256", RSAPSSSHA384: "RSASSA-PSS with SHA-384",
	RSAPSSSHA512: "RSASSA-PSS with SHA-512", ECDSASHA1: "ecdsa-with-SHA1",
	ECDSASHA256: "ecdsa-with-SHA256", ECDSASHA384: "ecdsa-with-SHA384", ECDSASHA512: "ecdsa-with-SHA512",
	Ed25519: "Ed25519",
}

func (s Scheme) String() string {
	if s > 0 && s < maxScheme {
		return schemeNames[s]
	}
	return fmt.Sprintf("Scheme(%d)", uint8(s))
}

// Method returns the AUTH method that carries the scheme.
func (s Scheme) Method() message.AuthMethod {
	switch s {
	case RSAClassic:
		return message.AuthRSASig
	case ECDSAClassic256:
		return message.AuthECDSA256
	case ECDSAClassic384:
		return message.AuthECDSA384
	case ECDSAClassic521:
		return message.AuthECDSA521
	}
	return message.AuthDigitalSignature
}

// hash is the scheme's digest (0 for Ed25519, which signs the octets).
func (s Scheme) hash() crypto.Hash {
	switch s {
	case RSAClassic, RSAPKCS1SHA1, ECDSASHA1:
		return crypto.SHA1
	case ECDSAClassic256, RSAPKCS1SHA256, RSAPSSSHA256, ECDSASHA256:
		return crypto.SHA256
	case ECDSAClassic384, RSAPKCS1SHA384, RSAPSSSHA384, ECDSASHA384:
		return crypto.SHA384
	case ECDSAClassic521, RSAPKCS1SHA512, RSAPSSSHA512, ECDSASHA512:
		return crypto.SHA512
	}
	return 0
}

// HashAlgorithm is the SIGNATURE_HASH_ALGORITHMS entry a method-14 scheme
// needs from the peer (RFC 7427 §4, RFC 8420 §2).
func (s Scheme) HashAlgorithm() message.HashAlgorithm {
	if s == Ed25519 {
		return message.HashIdentity
	}
	switch s.hash() {
	case crypto.SHA1:
		return message.HashSHA1
	case crypto.SHA256:
		return message.HashSHA2256
	case crypto.SHA384:
		return message.HashSHA2384
	case crypto.SHA512:
		return message.HashSHA2512
	}
	return 0
}

// SchemeSet is a set of schemes.
type SchemeSet uint32

// Schemes returns the set of the given schemes.
func Schemes(list ...Scheme) SchemeSet {
	var s SchemeSet
	for _, x := range list {
		s |= 1 << x
	}
	return s
}

// Has reports whether x is in the set.
func (s SchemeSet) Has(x Scheme) bool { return x > 0 && x < maxScheme && s&(1<<x) != 0 }

// DefaultSchemes are the schemes keyplane accepts from a peer by default:
// everything but SHA-1 inside RFC 7427 signatures, which RFC 8247 §3.2
// forbids. The classic RSA method (SHA-1) stays accepted, as strongSwan
// does, for peers without RFC 7427.
var DefaultSchemes = Schemes(RSAClassic, ECDSAClassic256, ECDSAClassic384, ECDSAClassic521,
	RSAPKCS1SHA256, RSAPKCS1SHA384, RSAPKCS1SHA512, RSAPSSSHA256, RSAPSSSHA384, RSAPSSSHA512,
	ECDSASHA256, ECDSASHA384, ECDSASHA512, Ed25519)

// HashAlgorithms returns the SIGNATURE_HASH_ALGORITHMS list that announces
// the method-14 schemes of the set, strongest SHA-2 last as strongSwan
// sends it: SHA2-256, SHA2-384, SHA2-512, then Identity.
func (s SchemeSet) HashAlgorithms() []message.HashAlgorithm {
	var out []message.HashAlgorithm
	for _, h := range []message.HashAlgorithm{message.HashSHA1, message.HashSHA2256, message.HashSHA2384, message.HashSHA2512, message.HashIdentity} {
		for x := Scheme(1); x < maxScheme; x++ {
			if s.Has(x) && x.Method() == message.AuthDigitalSignature && x.HashAlgorithm() == h {
				out = append(out, h)
				break
			}
		}
	}
	return out
}

// Errors of Sign and Verify; every error is a *SignatureError wrapping one
// of them.
var (
	// ErrSignature: the AUTH data does not verify with the key.
	ErrSignature = errors.New("ikecrypto: signature does not verify")
	// ErrSignatureScheme: the scheme is not accepted (policy, key type, key
	// size, or malformed/unknown AlgorithmIdentifier).
	ErrSignatureScheme = errors.New("ikecrypto: signature scheme not acceptable")
	// ErrNoCommonHash: the peer's SIGNATURE_HASH_ALGORITHMS lists no hash
	// this end can sign with its key.
	ErrNoCommonHash = errors.New("ikecrypto: no hash algorithm in common with the peer")
)

// SignatureError reports a failed signature or verification.
type SignatureError struct {
	Method message.AuthMethod
	Scheme Scheme // 0 if not determined
	Reason string
	Err    error
}

func (e *SignatureError) Error() string {
	s := fmt.Sprintf("%v", e.Method)
	if e.Scheme != 0 {
		s += " " + e.Scheme.String()
	}
	return fmt.Sprintf("%v (%s): %s", e.Err, s, e.Reason)
}

func (e *SignatureError) Unwrap() error { return e.Err }

func sigErr(m message.AuthMethod, s Scheme, err error, format string, args ...any) error {
	return &SignatureError{Method: m, Scheme: s, Reason: fmt.Sprintf(format, args...), Err: err}
}

// SignOptions choose the signature.
type SignOptions struct {
	// PeerHashes is the peer's SIGNATURE_HASH_ALGORITHMS list, nil if it
	// sent none: then the classic method for the key is used (1 for RSA,
	// 9 to 11 for ECDSA; Ed25519 has none).
	PeerHashes []message.HashAlgorithm
	// RSAPKCS1 signs RSA keys with RSASSA-PKCS1-v1_5 instead of RSASSA-PSS
	// in RFC 7427 signatures (RFC 8247 prefers PSS; some peers lack it).
	RSAPKCS1 bool
}

// Sign returns the AUTH payload of signedOctets (SignedOctets, with
// AppendIntAuth after IKE_INTERMEDIATE) signed with key, an RSA, ECDSA
// (P-256, P-384, P-521) or Ed25519 private key, or any crypto.Signer with
// such a public key. RSA-PSS uses a salt as long as the hash.
func Sign(signedOctets []byte, key crypto.Signer, opts SignOptions) (*message.Auth, Scheme, error) {
	s, err := chooseScheme(key.Public(), opts)
	if err != nil {
		return nil, 0, err
	}
	sig, err := signWith(s, key, signedOctets)
	if err != nil {
		return nil, s, sigErr(s.Method(), s, ErrSignatureScheme, "signing: %v", err)
	}
	if s.Method() != message.AuthDigitalSignature {
		return &message.Auth{Method: s.Method(), Data: sig}, s, nil
	}
	data, err := message.SignatureAuth{AlgorithmIdentifier: algorithmIdentifier(s), Signature: sig}.Bytes()
	if err != nil {
		return nil, s, sigErr(s.Method(), s, ErrSignatureScheme, "%v", err)
	}
	return &message.Auth{Method: message.AuthDigitalSignature, Data: data}, s, nil
}

func chooseScheme(pub crypto.PublicKey, opts SignOptions) (Scheme, error) {
	peer := func(h message.HashAlgorithm) bool {
		for _, x := range opts.PeerHashes {
			if x == h {
				return true
			}
		}
		return false
	}
	first := func(cands ...Scheme) (Scheme, error) {
		for _, c := range cands {
			if peer(c.HashAlgorithm()) {
				return c, nil
			}
		}
		return 0, sigErr(message.AuthDigitalSignature, 0, ErrNoCommonHash, "peer accepts %v, a %s key can sign with %v",
			opts.PeerHashes, keyType(pub), hashesOf(cands))
	}
	classic := opts.PeerHashes == nil
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if classic {
			return RSAClassic, nil
		}
		if opts.RSAPKCS1 {
			return first(RSAPKCS1SHA256, RSAPKCS1SHA384, RSAPKCS1SHA512)
		}
		return first(RSAPSSSHA256, RSAPSSSHA384, RSAPSSSHA512)
	case *ecdsa.PublicKey:
		var c Scheme
		var order []Scheme
		switch k.Curve {
		case elliptic.P256():
			c, order = ECDSAClassic256, []Scheme{ECDSASHA256, ECDSASHA384, ECDSASHA512}
		case elliptic.P384():
			c, order = ECDSAClassic384, []Scheme{ECDSASHA384, ECDSASHA512, ECDSASHA256}
		case elliptic.P521():
			c, order = ECDSAClassic521, []Scheme{ECDSASHA512, ECDSASHA384, ECDSASHA256}
		default:
			return 0, sigErr(message.AuthDigitalSignature, 0, ErrSignatureScheme, "ECDSA curve %s", k.Curve.Params().Name)
		}
		if classic {
			return c, nil
		}
		return first(order...)
	case ed25519.PublicKey:
		if classic {
			return 0, sigErr(message.AuthDigitalSignature, Ed25519, ErrNoCommonHash,
				"the peer sent no SIGNATURE_HASH_ALGORITHMS, and Ed25519 exists only in RFC 7427 signatures")
		}
		return first(Ed25519)
	}
	return 0, sigErr(message.AuthDigitalSignature, 0, ErrSignatureScheme, "key type %T", pub)
}

func hashesOf(ss []Scheme) []message.HashAlgorithm {
	var out []message.HashAlgorithm
	for _, s := range ss {
		out = append(out, s.HashAlgorithm())
	}
	return out
}

func keyType(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

func digest(s Scheme, octets []byte) []byte {
	h := s.hash().New()
	h.Write(octets)
	return h.Sum(nil)
}

func signWith(s Scheme, key crypto.Signer, octets []byte) ([]byte, error) {
	if s == Ed25519 {
		return key.Sign(rand.Reader, octets, crypto.Hash(0))
	}
	d := digest(s, octets)
	switch s {
	case RSAPSSSHA256, RSAPSSSHA384, RSAPSSSHA512:
		return key.Sign(rand.Reader, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: s.hash()})
	}
	sig, err := key.Sign(rand.Reader, d, s.hash())
	if err != nil {
		return nil, err
	}
	if s == ECDSAClassic256 || s == ECDSAClassic384 || s == ECDSAClassic521 {
		// crypto.Signer gives ASN.1; methods 9-11 send r | s.
		return ecdsaFixed(sig, ecdsaSize(key.Public().(*ecdsa.PublicKey).Curve))
	}
	return sig, nil
}

func ecdsaSize(c elliptic.Curve) int { return (c.Params().BitSize + 7) / 8 }

// ecdsaFixed converts an ASN.1 Ecdsa-Sig-Value to r | s of n octets each.
func ecdsaFixed(der []byte, n int) ([]byte, error) {
	var r, s big.Int
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() || !seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, errors.New("malformed ECDSA signature from the signer")
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 8*n || s.BitLen() > 8*n {
		return nil, errors.New("ECDSA signature values out of range")
	}
	out := make([]byte, 2*n)
	r.FillBytes(out[:n])
	s.FillBytes(out[n:])
	return out, nil
}

// Verify checks an AUTH payload against signedOctets and the peer's
// public key (from its certificate), under policy. It returns the scheme
// that verified. Failures are *SignatureError: ErrSignature for a
// signature that does not verify, ErrSignatureScheme for one that is not
// acceptable (not in policy, a key of the wrong type or size, a malformed
// AlgorithmIdentifier).
func Verify(signedOctets []byte, auth *message.Auth, pub crypto.PublicKey, policy VerifyPolicy) (Scheme, error) {
	policy = policy.withDefaults()
	m := auth.Method
	var s Scheme
	sig := auth.Data
	switch m {
	case message.AuthRSASig:
		s = RSAClassic
	case message.AuthECDSA256:
		s = ECDSAClassic256
	case message.AuthECDSA384:
		s = ECDSAClassic384
	case message.AuthECDSA521:
		s = ECDSAClassic521
	case message.AuthDigitalSignature:
		sa, err := message.ParseSignatureAuth(auth.Data)
		if err != nil {
			return 0, sigErr(m, 0, ErrSignatureScheme, "%v", err)
		}
		var pss *rsa.PSSOptions
		s, pss, err = parseAlgorithmIdentifier(sa.AlgorithmIdentifier)
		if err != nil {
			return 0, sigErr(m, 0, ErrSignatureScheme, "%v", err)
		}
		sig = sa.Signature
		if !policy.Schemes.Has(s) {
			return s, sigErr(m, s, ErrSignatureScheme, "not accepted by policy")
		}
		return s, verifyWith(m, s, pss, pub, signedOctets, sig, policy)
	default:
		return 0, sigErr(m, 0, ErrSignatureScheme, "not a public key AUTH method")
	}
	if !policy.Schemes.Has(s) {
		return s, sigErr(m, s, ErrSignatureScheme, "not accepted by policy")
	}
	return s, verifyWith(m, s, nil, pub, signedOctets, sig, policy)
}

// VerifyPolicy is what Verify accepts.
type VerifyPolicy struct {
	// Schemes accepted; zero means DefaultSchemes.
	Schemes SchemeSet
	// MinRSABits is the smallest RSA modulus accepted (default 2048, RFC
	// 8247 §3.2; Go's crypto/rsa itself refuses keys under 1024 bits).
	MinRSABits int
}

func (p VerifyPolicy) withDefaults() VerifyPolicy {
	if p.Schemes == 0 {
		p.Schemes = DefaultSchemes
	}
	if p.MinRSABits <= 0 {
		p.MinRSABits = 2048
	}
	return p
}

func verifyWith(m message.AuthMethod, s Scheme, pss *rsa.PSSOptions, pub crypto.PublicKey, octets, sig []byte, policy VerifyPolicy) error {
	bad := func() error { return sigErr(m, s, ErrSignature, "with the %s key", keyType(pub)) }
	switch s {
	case Ed25519:
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return sigErr(m, s, ErrSignatureScheme, "Ed25519 signature, %s key", keyType(pub))
		}
		if !ed25519.Verify(k, octets, sig) {
			return bad()
		}
		return nil
	case RSAClassic, RSAPKCS1SHA1, RSAPKCS1SHA256, RSAPKCS1SHA384, RSAPKCS1SHA512, RSAPSSSHA256, RSAPSSSHA384, RSAPSSSHA512:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return sigErr(m, s, ErrSignatureScheme, "RSA signature, %s key", keyType(pub))
		}
		if k.N.BitLen() < policy.MinRSABits {
			return sigErr(m, s, ErrSignatureScheme, "RSA key of %d bits, at least %d accepted", k.N.BitLen(), policy.MinRSABits)
		}
		d := digest(s, octets)
		var err error
		if pss != nil {
			err = rsa.VerifyPSS(k, s.hash(), d, sig, pss)
		} else {
			err = rsa.VerifyPKCS1v15(k, s.hash(), d, sig)
		}
		if err != nil {
			return bad()
		}
		return nil
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return sigErr(m, s, ErrSignatureScheme, "ECDSA signature, %s key", keyType(pub))
	}
	d := digest(s, octets)
	var want elliptic.Curve
	switch s {
	case ECDSAClassic256:
		want = elliptic.P256()
	case ECDSAClassic384:
		want = elliptic.P384()
	case ECDSAClassic521:
		want = elliptic.P521()
	default: // method 14: any of the three curves with any of the hashes
		c := k.Curve
		if c != elliptic.P256() && c != elliptic.P384() && c != elliptic.P521() {
			return sigErr(m, s, ErrSignatureScheme, "ECDSA curve %s", c.Params().Name)
		}
		if !ecdsa.VerifyASN1(k, d, sig) {
			return bad()
		}
		return nil
	}
	if k.Curve != want {
		return sigErr(m, s, ErrSignatureScheme, "method needs %s, the key is on %s", want.Params().Name, k.Curve.Params().Name)
	}
	n := ecdsaSize(want)
	if len(sig) != 2*n {
		return sigErr(m, s, ErrSignature, "signature of %d octets, need %d", len(sig), 2*n)
	}
	r, ss := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
	if !ecdsa.Verify(k, d, r, ss) {
		return bad()
	}
	return nil
}

// Object identifiers of RFC 7427 Appendix A and RFC 8420.
var (
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidRSASSAPSS     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDSASHA1     = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// algorithmIdentifier returns the AlgorithmIdentifier keyplane sends for a
// method-14 scheme: RFC 7427 Appendix A's encodings (NULL parameters for
// the RSA PKCS#1 OIDs, none for ECDSA and Ed25519), and for RSASSA-PSS
// the explicit parameters of its A.4.3 (hash, MGF1 with the same hash,
// salt length equal to the hash length, trailer field default).
func algorithmIdentifier(s Scheme) []byte {
	var b cryptobyte.Builder
	null := func(b *cryptobyte.Builder) { b.AddASN1NULL() }
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		switch s {
		case RSAPKCS1SHA1, RSAPKCS1SHA256, RSAPKCS1SHA384, RSAPKCS1SHA512:
			b.AddASN1ObjectIdentifier(map[Scheme]asn1.ObjectIdentifier{RSAPKCS1SHA1: oidSHA1WithRSA,
				RSAPKCS1SHA256: oidSHA256WithRSA, RSAPKCS1SHA384: oidSHA384WithRSA, RSAPKCS1SHA512: oidSHA512WithRSA}[s])
			null(b)
		case ECDSASHA1, ECDSASHA256, ECDSASHA384, ECDSASHA512:
			b.AddASN1ObjectIdentifier(map[Scheme]asn1.ObjectIdentifier{ECDSASHA1: oidECDSASHA1,
				ECDSASHA256: oidECDSASHA256, ECDSASHA384: oidECDSASHA384, ECDSASHA512: oidECDSASHA512}[s])
		case Ed25519:
			b.AddASN1ObjectIdentifier(oidEd25519)
		case RSAPSSSHA256, RSAPSSSHA384, RSAPSSSHA512:
			h := map[Scheme]asn1.ObjectIdentifier{RSAPSSSHA256: oidSHA256, RSAPSSSHA384: oidSHA384, RSAPSSSHA512: oidSHA512}[s]
			hashAlg := func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(h); null(b) })
			}
			b.AddASN1ObjectIdentifier(oidRSASSAPSS)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), hashAlg)
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidMGF1)
						hashAlg(b)
					})
				})
				b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1Int64(int64(s.hash().Size()))
				})
			})
		}
	})
	return b.BytesOrPanic()
}

// parseAlgorithmIdentifier reads the AlgorithmIdentifier of a method-14
// AUTH payload.
func parseAlgorithmIdentifier(der []byte) (Scheme, *rsa.PSSOptions, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() || !seq.ReadASN1ObjectIdentifier(&oid) {
		return 0, nil, errors.New("malformed AlgorithmIdentifier")
	}
	params := seq // what follows the OID
	noParams := func() bool { return params.Empty() }
	nullParams := func() bool {
		if params.Empty() {
			return true
		}
		p := params
		var null cryptobyte.String
		return p.ReadASN1(&null, cbasn1.NULL) && null.Empty() && p.Empty()
	}
	for _, c := range []struct {
		oid  asn1.ObjectIdentifier
		s    Scheme
		null bool
	}{
		{oidSHA1WithRSA, RSAPKCS1SHA1, true}, {oidSHA256WithRSA, RSAPKCS1SHA256, true},
		{oidSHA384WithRSA, RSAPKCS1SHA384, true}, {oidSHA512WithRSA, RSAPKCS1SHA512, true},
		{oidECDSASHA1, ECDSASHA1, false}, {oidECDSASHA256, ECDSASHA256, false},
		{oidECDSASHA384, ECDSASHA384, false}, {oidECDSASHA512, ECDSASHA512, false},
		{oidEd25519, Ed25519, false},
	} {
		if !oid.Equal(c.oid) {
			continue
		}
		if (c.null && !nullParams()) || (!c.null && !noParams()) {
			return 0, nil, fmt.Errorf("%v with unexpected parameters", c.s)
		}
		return c.s, nil, nil
	}
	if oid.Equal(oidRSASSAPSS) {
		return parsePSSParams(params)
	}
	return 0, nil, fmt.Errorf("unsupported signature algorithm %v", oid)
}

// parsePSSParams reads RSASSA-PSS-params (RFC 4055 §3.1). keyplane accepts
// SHA-256, SHA-384 or SHA-512 with MGF1 over the same hash (what Go's
// crypto/rsa verifies), any salt length, and the default trailer field.
// The defaults (SHA-1, MGF1-SHA1, salt 20) name SHA-1, which is refused.
func parsePSSParams(params cryptobyte.String) (Scheme, *rsa.PSSOptions, error) {
	var p cryptobyte.String
	if !params.ReadASN1(&p, cbasn1.SEQUENCE) || !params.Empty() {
		return 0, nil, errors.New("RSASSA-PSS without parameters (the SHA-1 defaults are not accepted)")
	}
	hashOID := oidSHA1
	mgfHash := oidSHA1
	salt := int64(20)
	readHashAlg := func(s *cryptobyte.String) (asn1.ObjectIdentifier, bool) {
		var a cryptobyte.String
		var o asn1.ObjectIdentifier
		if !s.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&o) {
			return nil, false
		}
		if !a.Empty() {
			var null cryptobyte.String
			if !a.ReadASN1(&null, cbasn1.NULL) || !null.Empty() || !a.Empty() {
				return nil, false
			}
		}
		return o, true
	}
	var field cryptobyte.String
	var present bool
	if !p.ReadOptionalASN1(&field, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return 0, nil, errors.New("malformed RSASSA-PSS hashAlgorithm")
	}
	if present {
		o, ok := readHashAlg(&field)
		if !ok || !field.Empty() {
			return 0, nil, errors.New("malformed RSASSA-PSS hashAlgorithm")
		}
		hashOID = o
	}
	if !p.ReadOptionalASN1(&field, &present, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return 0, nil, errors.New("malformed RSASSA-PSS maskGenAlgorithm")
	}
	if present {
		var mgf cryptobyte.String
		var o asn1.ObjectIdentifier
		if !field.ReadASN1(&mgf, cbasn1.SEQUENCE) || !field.Empty() || !mgf.ReadASN1ObjectIdentifier(&o) || !o.Equal(oidMGF1) {
			return 0, nil, errors.New("RSASSA-PSS mask generation function is not MGF1")
		}
		h, ok := readHashAlg(&mgf)
		if !ok || !mgf.Empty() {
			return 0, nil, errors.New("malformed MGF1 parameters")
		}
		mgfHash = h
	}
	if !p.ReadOptionalASN1(&field, &present, cbasn1.Tag(2).Constructed().ContextSpecific()) {
		return 0, nil, errors.New("malformed RSASSA-PSS saltLength")
	}
	if present && (!field.ReadASN1Int64WithTag(&salt, cbasn1.INTEGER) || !field.Empty()) {
		return 0, nil, errors.New("malformed RSASSA-PSS saltLength")
	}
	if !p.ReadOptionalASN1(&field, &present, cbasn1.Tag(3).Constructed().ContextSpecific()) {
		return 0, nil, errors.New("malformed RSASSA-PSS trailerField")
	}
	if present {
		var tf int64
		if !field.ReadASN1Int64WithTag(&tf, cbasn1.INTEGER) || !field.Empty() || tf != 1 {
			return 0, nil, errors.New("RSASSA-PSS trailerField is not 1")
		}
	}
	if !p.Empty() {
		return 0, nil, errors.New("trailing data in RSASSA-PSS parameters")
	}
	var s Scheme
	switch {
	case hashOID.Equal(oidSHA256):
		s = RSAPSSSHA256
	case hashOID.Equal(oidSHA384):
		s = RSAPSSSHA384
	case hashOID.Equal(oidSHA512):
		s = RSAPSSSHA512
	default:
		return 0, nil, fmt.Errorf("RSASSA-PSS with hash %v", hashOID)
	}
	if !mgfHash.Equal(hashOID) {
		return 0, nil, fmt.Errorf("RSASSA-PSS with MGF1 over %v and hash %v", mgfHash, hashOID)
	}
	if salt < 0 || salt > 1024 {
		return 0, nil, fmt.Errorf("RSASSA-PSS salt length %d", salt)
	}
	if salt == 0 {
		// crypto/rsa cannot demand an empty salt exactly (SaltLength 0
		// means "any"); verifying with any salt length accepts it.
		return s, &rsa.PSSOptions{Hash: s.hash(), SaltLength: rsa.PSSSaltLengthAuto}, nil
	}
	return s, &rsa.PSSOptions{Hash: s.hash(), SaltLength: int(salt)}, nil
}
