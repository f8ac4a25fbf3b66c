package ikecrypto_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

var allHashes = []message.HashAlgorithm{message.HashSHA2256, message.HashSHA2384, message.HashSHA2512, message.HashIdentity}

// RFC 4754 §8: the ECDSA-256, ECDSA-384 and ECDSA-521 examples: the
// published signature (r, s) of "abc" by the published public key g^w
// verifies as AUTH methods 9, 10 and 11; changed, it does not.
func TestECDSARFC4754(t *testing.T) {
	for _, v := range []struct {
		m                 message.AuthMethod
		curve             elliptic.Curve
		w, gwx, gwy, r, s string
	}{
		{message.AuthECDSA256, elliptic.P256(),
			"DC51D3866A15BACDE33D96F992FCA99DA7E6EF0934E7097559C27F1614C88A7F",
			"2442A5CC0ECD015FA3CA31DC8E2BBC70BF42D60CBCA20085E0822CB04235E970",
			"6FC98BD7E50211A4A27102FA3549DF79EBCB4BF246B80945CDDFE7D509BBFD7D",
			"CB28E0999B9C7715FD0A80D8E47A77079716CBBF917DD72E97566EA1C066957C",
			"86FA3BB4E26CAD5BF90B7F81899256CE7594BB1EA0C89212748BFF3B3D5B0315"},
		{message.AuthECDSA384, elliptic.P384(),
			"0BEB646634BA87735D77AE4809A0EBEA865535DE4C1E1DCB692E84708E81A5AF62E528C38B2A81B35309668D73524D9F",
			"96281BF8DD5E0525CA049C048D345D3082968D10FEDF5C5ACA0C64E6465A97EA5CE10C9DFEC21797415710721F437922",
			"447688BA94708EB6E2E4D59F6AB6D7EDFF9301D249FE49C33096655F5D502FAD3D383B91C5E7EDAA2B714CC99D5743CA",
			"FB017B914E29149432D8BAC29A514640B46F53DDAB2C69948084E2930F1C8F7E08E07C9C63F2D21A07DCB56A6AF56EB3",
			"B263A1305E057F984D38726A1B46874109F417BCA112674C528262A40A629AF1CBB9F516CE0FA7D2FF630863A00E8B9F"},
		{message.AuthECDSA521, elliptic.P521(),
			"0065FDA3409451DCAB0A0EAD45495112A3D813C17BFD34BDF8C1209D7DF5849120597779060A7FF9D704ADF78B570FFAD6F062E95C7E0C5D5481C5B153B48B375FA1",
			"0151518F1AF0F563517EDD5485190DF95A4BF57B5CBA4CF2A9A3F6474725A35F7AFE0A6DDEB8BEDBCD6A197E592D40188901CECD650699C9B5E456AEA5ADD19052A8",
			"006F3B142EA1BFFF7E2837AD44C9E4FF6D2D34C73184BBAD90026DD5E6E85317D9DF45CAD7803C6C20035B2F3FF63AFF4E1BA64D1C077577DA3F4286C58F0AEAE643",
			"0154FD3836AF92D0DCA57DD5341D3053988534FDE8318FC6AAAAB68E2E6F4339B19F2F281A7E0B22C269D93CF8794A9278880ED7DBB8D9362CAEACEE544320552251",
			"017705A7030290D1CEB605A9A1BB03FF9CDD521E87A696EC926C8C10C8362DF4975367101F67D1CF9BCCBF2F3D239534FA509E70AAC851AE01AAC68D62F866472660"},
	} {
		t.Run(v.m.String(), func(t *testing.T) {
			pub := &ecdsa.PublicKey{Curve: v.curve, X: new(big.Int).SetBytes(h(t, v.gwx)), Y: new(big.Int).SetBytes(h(t, v.gwy))}
			// The published private key w gives the published public key.
			if x, y := v.curve.ScalarBaseMult(h(t, v.w)); x.Cmp(pub.X) != 0 || y.Cmp(pub.Y) != 0 {
				t.Fatal("w·G is not g^w: transcription error")
			}
			n := (v.curve.Params().BitSize + 7) / 8
			sig := append(new(big.Int).SetBytes(h(t, v.r)).FillBytes(make([]byte, n)), new(big.Int).SetBytes(h(t, v.s)).FillBytes(make([]byte, n))...)
			auth := &message.Auth{Method: v.m, Data: sig}
			s, err := ikecrypto.Verify([]byte("abc"), auth, pub, ikecrypto.VerifyPolicy{})
			if err != nil || s.Method() != v.m {
				t.Fatalf("published signature: %v %v", s, err)
			}
			for _, mut := range []func([]byte) []byte{
				func(b []byte) []byte { b[3] ^= 1; return b },
				func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
				func(b []byte) []byte { return b[1:] },
			} {
				bad := &message.Auth{Method: v.m, Data: mut(bytes.Clone(sig))}
				if _, err := ikecrypto.Verify([]byte("abc"), bad, pub, ikecrypto.VerifyPolicy{}); !errors.Is(err, ikecrypto.ErrSignature) {
					t.Errorf("altered signature: %v", err)
				}
			}
			if _, err := ikecrypto.Verify([]byte("abd"), auth, pub, ikecrypto.VerifyPolicy{}); !errors.Is(err, ikecrypto.ErrSignature) {
				t.Errorf("other octets: %v", err)
			}
		})
	}
}

// RFC 8032 §7.1 TEST 1 and TEST 2: Ed25519 is deterministic, so the AUTH
// payload carries exactly the published signature, with RFC 8420's
// AlgorithmIdentifier.
func TestEd25519RFC8032(t *testing.T) {
	for _, v := range []struct{ secret, public, msg, sig string }{
		{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
			"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
			"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
	} {
		key := ed25519.NewKeyFromSeed(h(t, v.secret))
		if !bytes.Equal(key.Public().(ed25519.PublicKey), h(t, v.public)) {
			t.Fatal("public key differs from RFC 8032's")
		}
		msg := h(t, v.msg)
		auth, s, err := ikecrypto.Sign(msg, key, ikecrypto.SignOptions{PeerHashes: allHashes})
		if err != nil || s != ikecrypto.Ed25519 || auth.Method != message.AuthDigitalSignature {
			t.Fatalf("sign: %v %v", s, err)
		}
		sa, err := message.ParseSignatureAuth(auth.Data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sa.AlgorithmIdentifier, h(t, "300506032b6570")) || !bytes.Equal(sa.Signature, h(t, v.sig)) {
			t.Fatalf("AUTH data %x", auth.Data)
		}
		if _, err := ikecrypto.Verify(msg, auth, key.Public(), ikecrypto.VerifyPolicy{}); err != nil {
			t.Fatal(err)
		}
	}
}

// rfc7515Key is the RSA key of RFC 7515 Appendix A.2.
func rfc7515Key(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	b64 := func(s string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return new(big.Int).SetBytes(b)
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: b64("ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"), E: 65537},
		D:         b64("Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ"),
		Primes: []*big.Int{
			b64("4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc"),
			b64("uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc"),
		},
	}
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	k.Precompute()
	return k
}

// RFC 7515 Appendix A.2: the RSASSA-PKCS1-v1_5 SHA-256 signature of the
// JWS signing input by the published key. PKCS#1 v1.5 is deterministic:
// an RFC 7427 sha256WithRSAEncryption AUTH payload carries that exact
// signature, after RFC 7427 A.1.2's AlgorithmIdentifier.
func TestRSAPKCS1RFC7515(t *testing.T) {
	key := rfc7515Key(t)
	input := []byte("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ")
	want, _ := base64.RawURLEncoding.DecodeString("cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw")
	auth, s, err := ikecrypto.Sign(input, key, ikecrypto.SignOptions{PeerHashes: []message.HashAlgorithm{message.HashSHA2256}, RSAPKCS1: true})
	if err != nil || s != ikecrypto.RSAPKCS1SHA256 {
		t.Fatalf("%v %v", s, err)
	}
	sa, _ := message.ParseSignatureAuth(auth.Data)
	if !bytes.Equal(sa.AlgorithmIdentifier, h(t, "300d06092a864886f70d01010b0500")) || !bytes.Equal(sa.Signature, want) {
		t.Fatalf("AUTH data differs from RFC 7515's signature and RFC 7427's identifier")
	}
	if _, err := ikecrypto.Verify(input, auth, &key.PublicKey, ikecrypto.VerifyPolicy{}); err != nil {
		t.Fatal(err)
	}
}

// RFC 7427 Appendix A: the AlgorithmIdentifier encodings keyplane sends
// (A.3.2-A.3.4 for ECDSA, A.4.3 for RSASSA-PSS with SHA-256; the SHA-384 and
// SHA-512 variants follow A.4.3's construction).
func TestAlgorithmIdentifiersRFC7427(t *testing.T) {
	rsa2048 := rsaKey(t, 2048)
	for _, c := range []struct {
		key  crypto.Signer
		peer []message.HashAlgorithm
		want ikecrypto.Scheme
		der  string
	}{
		{rsa2048, []message.HashAlgorithm{message.HashSHA2256}, ikecrypto.RSAPSSSHA256,
			"3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040201 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040201 0500 a203 020120"},
		{rsa2048, []message.HashAlgorithm{message.HashSHA2384}, ikecrypto.RSAPSSSHA384,
			"3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040202 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040202 0500 a203 020130"},
		{rsa2048, []message.HashAlgorithm{message.HashSHA2512}, ikecrypto.RSAPSSSHA512,
			"3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040203 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040203 0500 a203 020140"},
		{ecKey(t, elliptic.P256()), allHashes, ikecrypto.ECDSASHA256, "300a06082a8648ce3d040302"},
		{ecKey(t, elliptic.P384()), allHashes, ikecrypto.ECDSASHA384, "300a06082a8648ce3d040303"},
		{ecKey(t, elliptic.P521()), allHashes, ikecrypto.ECDSASHA512, "300a06082a8648ce3d040304"},
	} {
		auth, s, err := ikecrypto.Sign([]byte("octets"), c.key, ikecrypto.SignOptions{PeerHashes: c.peer})
		if err != nil || s != c.want {
			t.Fatalf("%v: %v %v", c.want, s, err)
		}
		sa, _ := message.ParseSignatureAuth(auth.Data)
		if !bytes.Equal(sa.AlgorithmIdentifier, h(t, c.der)) {
			t.Errorf("%v: %x", c.want, sa.AlgorithmIdentifier)
		}
	}
	// The SHA-1 identifiers of A.1.1 and A.3.1 are recognized, and refused
	// unless the policy allows them.
	for _, der := range []string{"300d06092a864886f70d0101050500", "300906072a8648ce3d0401"} {
		data, _ := message.SignatureAuth{AlgorithmIdentifier: h(t, der), Signature: []byte{1}}.Bytes()
		s, err := ikecrypto.Verify([]byte("x"), &message.Auth{Method: message.AuthDigitalSignature, Data: data}, &rsa2048.PublicKey, ikecrypto.VerifyPolicy{})
		if !errors.Is(err, ikecrypto.ErrSignatureScheme) || (s != ikecrypto.RSAPKCS1SHA1 && s != ikecrypto.ECDSASHA1) {
			t.Errorf("%s: %v %v", der, s, err)
		}
	}
}

var keyCache sync.Map

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	if k, ok := keyCache.Load(bits); ok {
		return k.(*rsa.PrivateKey)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	keyCache.Store(bits, k)
	return k
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignVerifyMatrix signs with every key type, classic and RFC 7427,
// and verifies; then checks the refusals.
func TestSignVerifyMatrix(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	keys := map[string]crypto.Signer{
		"RSA-2048": rsaKey(t, 2048), "RSA-3072": rsaKey(t, 3072),
		"P-256": ecKey(t, elliptic.P256()), "P-384": ecKey(t, elliptic.P384()), "P-521": ecKey(t, elliptic.P521()),
		"Ed25519": edKey,
	}
	octets := []byte("RealMessage2 | NonceIData | MACedIDForR")
	classic := map[string]message.AuthMethod{"RSA-2048": message.AuthRSASig, "RSA-3072": message.AuthRSASig,
		"P-256": message.AuthECDSA256, "P-384": message.AuthECDSA384, "P-521": message.AuthECDSA521}
	for name, key := range keys {
		for _, opts := range []ikecrypto.SignOptions{{}, {PeerHashes: allHashes}, {PeerHashes: allHashes, RSAPKCS1: true},
			{PeerHashes: []message.HashAlgorithm{message.HashSHA2512}}} {
			auth, s, err := ikecrypto.Sign(octets, key, opts)
			if name == "Ed25519" && (opts.PeerHashes == nil || len(opts.PeerHashes) == 1) {
				if !errors.Is(err, ikecrypto.ErrNoCommonHash) {
					t.Errorf("%s %+v: %v", name, opts, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s %+v: %v", name, opts, err)
			}
			if opts.PeerHashes == nil && auth.Method != classic[name] {
				t.Errorf("%s without RFC 7427: method %v", name, auth.Method)
			}
			if opts.PeerHashes != nil && auth.Method != message.AuthDigitalSignature {
				t.Errorf("%s with RFC 7427: method %v", name, auth.Method)
			}
			if len(opts.PeerHashes) == 1 && s.HashAlgorithm() != message.HashSHA2512 {
				t.Errorf("%s: %v ignores the peer's only hash", name, s)
			}
			pss := s == ikecrypto.RSAPSSSHA256 || s == ikecrypto.RSAPSSSHA384 || s == ikecrypto.RSAPSSSHA512
			if name[:3] == "RSA" && opts.PeerHashes != nil && opts.RSAPKCS1 == pss {
				t.Errorf("%s %+v: %v", name, opts, s)
			}
			got, err := ikecrypto.Verify(octets, auth, key.Public(), ikecrypto.VerifyPolicy{})
			if err != nil || got != s {
				t.Fatalf("%s %v: verify: %v %v", name, s, got, err)
			}
			if _, err := ikecrypto.Verify(append(bytes.Clone(octets), 0), auth, key.Public(), ikecrypto.VerifyPolicy{}); !errors.Is(err, ikecrypto.ErrSignature) {
				t.Errorf("%s %v: other octets: %v", name, s, err)
			}
			// Another key of the same kind does not verify; a key of
			// another kind is the wrong scheme.
			for other, ok := range keys {
				if other == name || ok == nil {
					continue
				}
				_, err := ikecrypto.Verify(octets, auth, ok.Public(), ikecrypto.VerifyPolicy{MinRSABits: 1024})
				if err == nil {
					t.Errorf("%s's %v verified with %s's key", name, s, other)
				}
			}
			// A policy without the scheme refuses it.
			if _, err := ikecrypto.Verify(octets, auth, key.Public(), ikecrypto.VerifyPolicy{Schemes: ikecrypto.Schemes(ikecrypto.Ed25519)}); s != ikecrypto.Ed25519 && !errors.Is(err, ikecrypto.ErrSignatureScheme) {
				t.Errorf("%s %v against a policy without it: %v", name, s, err)
			}
		}
	}
	// RSA keys below the policy's minimum are refused.
	small := rsaKey(t, 1024)
	auth, _, err := ikecrypto.Sign(octets, small, ikecrypto.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ikecrypto.Verify(octets, auth, &small.PublicKey, ikecrypto.VerifyPolicy{}); !errors.Is(err, ikecrypto.ErrSignatureScheme) {
		t.Errorf("RSA-1024: %v", err)
	}
	var se *ikecrypto.SignatureError
	if _, err := ikecrypto.Verify(octets, &message.Auth{Method: message.AuthSharedKeyMIC, Data: []byte{1}}, &small.PublicKey, ikecrypto.VerifyPolicy{}); !errors.As(err, &se) || se.Method != message.AuthSharedKeyMIC {
		t.Errorf("PSK method: %v", err)
	}
	if got := ikecrypto.DefaultSchemes.HashAlgorithms(); len(got) != 4 || got[0] != message.HashSHA2256 || got[3] != message.HashIdentity {
		t.Errorf("DefaultSchemes.HashAlgorithms %v", got)
	}
	if got := ikecrypto.Schemes(ikecrypto.RSAClassic, ikecrypto.ECDSAClassic256).HashAlgorithms(); len(got) != 0 {
		t.Errorf("classic schemes announce %v", got)
	}
}

// TestMalformedAlgorithmIdentifiers: RFC 7427 identifiers keyplane does not
// accept are ErrSignatureScheme, not a verification attempt.
func TestMalformedAlgorithmIdentifiers(t *testing.T) {
	key := rsaKey(t, 2048)
	for name, der := range map[string]string{
		"PSS with default (SHA-1) parameters": "300b06092a864886f70d01010a",
		"PSS with empty parameters":           "300d06092a864886f70d01010a3000",
		"PSS, MGF1 over another hash":         "3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040201 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040203 0500 a203 020120",
		"PSS, trailer field 2":                "3046 0609 2a864886f70d01010a 3039 a00f 300d 0609 608648016503040201 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040201 0500 a203 020120 a303 020102",
		"PSS, MGF not MGF1":                   "3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040201 0500 a11c 301a 0609 2a864886f70d010109 300d 0609 608648016503040201 0500 a203 020120",
		"ECDSA with parameters":               "300c06082a8648ce3d0403020500",
		"RSA with non-NULL parameters":        "300e06092a864886f70d01010b020100",
		"unknown OID":                         "300506032a0304",
		"not a SEQUENCE":                      "3100",
		"DSA with SHA-256":                    "300b0609608648016503040302",
	} {
		data := append([]byte{byte(len(h(t, der)))}, h(t, der)...)
		data = append(data, make([]byte, 256)...)
		_, err := ikecrypto.Verify([]byte("x"), &message.Auth{Method: message.AuthDigitalSignature, Data: data}, &key.PublicKey, ikecrypto.VerifyPolicy{})
		if !errors.Is(err, ikecrypto.ErrSignatureScheme) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func readPEMKey(t *testing.T, name string) crypto.PublicKey {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestOpenSSLSignatures verifies signatures OpenSSL 3.0 made
// (testdata/openssl-sig/gen.sh): RSA-3072 RSASSA-PSS SHA-256 salt 32,
// ECDSA P-384 SHA-384 (DER), Ed25519, each in an RFC 7427 AUTH payload.
func TestOpenSSLSignatures(t *testing.T) {
	dir := "testdata/openssl-sig"
	msg, err := os.ReadFile(filepath.Join(dir, "msg.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		pub, sig, alg string
		want          ikecrypto.Scheme
	}{
		{"rsa3072.pub.pem", "rsa3072-pss-sha256.sig",
			"3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040201 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040201 0500 a203 020120",
			ikecrypto.RSAPSSSHA256},
		{"ecp384.pub.pem", "ecp384-sha384.der.sig", "300a06082a8648ce3d040303", ikecrypto.ECDSASHA384},
		{"ed25519.pub.pem", "ed25519.sig", "300506032b6570", ikecrypto.Ed25519},
	} {
		pub := readPEMKey(t, filepath.Join(dir, c.pub))
		sig, err := os.ReadFile(filepath.Join(dir, c.sig))
		if err != nil {
			t.Fatal(err)
		}
		data, err := message.SignatureAuth{AlgorithmIdentifier: h(t, c.alg), Signature: sig}.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		s, err := ikecrypto.Verify(msg, &message.Auth{Method: message.AuthDigitalSignature, Data: data}, pub, ikecrypto.VerifyPolicy{})
		if err != nil || s != c.want {
			t.Errorf("%s: %v %v", c.sig, s, err)
		}
	}
	// A salt length other than the one signed is refused.
	pub := readPEMKey(t, filepath.Join(dir, "rsa3072.pub.pem"))
	sig, _ := os.ReadFile(filepath.Join(dir, "rsa3072-pss-sha256.sig"))
	data, _ := message.SignatureAuth{AlgorithmIdentifier: h(t, "3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040201 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040201 0500 a203 020140"), Signature: sig}.Bytes()
	if _, err := ikecrypto.Verify(msg, &message.Auth{Method: message.AuthDigitalSignature, Data: data}, pub, ikecrypto.VerifyPolicy{}); !errors.Is(err, ikecrypto.ErrSignature) {
		t.Errorf("salt 64 for a salt-32 signature: %v", err)
	}
}

// TestOpenSSLVerifiesOurs: OpenSSL checks signatures keyplane made.
func TestOpenSSLVerifiesOurs(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed; TestOpenSSLSignatures still checks the other direction")
	}
	dir := t.TempDir()
	msg := []byte("signed octets for OpenSSL")
	msgFile := filepath.Join(dir, "msg")
	os.WriteFile(msgFile, msg, 0o600)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		name string
		key  crypto.Signer
		args []string
	}{
		{"rsa-pss", rsaKey(t, 3072), []string{"dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"}},
		{"ecdsa", ecKey(t, elliptic.P256()), []string{"dgst", "-sha256"}},
		{"ed25519", edKey, []string{"pkeyutl", "-rawin"}},
	} {
		auth, _, err := ikecrypto.Sign(msg, c.key, ikecrypto.SignOptions{PeerHashes: allHashes})
		if err != nil {
			t.Fatal(err)
		}
		sa, _ := message.ParseSignatureAuth(auth.Data)
		der, _ := x509.MarshalPKIXPublicKey(c.key.Public())
		pubFile, sigFile := filepath.Join(dir, c.name+".pub"), filepath.Join(dir, c.name+".sig")
		os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
		os.WriteFile(sigFile, sa.Signature, 0o600)
		args := append([]string{}, c.args...)
		if c.args[0] == "dgst" {
			args = append(args, "-verify", pubFile, "-signature", sigFile, msgFile)
		} else {
			args = append(args, "-verify", "-pubin", "-inkey", pubFile, "-sigfile", sigFile, "-in", msgFile)
		}
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Errorf("%s: openssl: %v\n%s", c.name, err, out)
		}
	}
}
