package ikecrypto_test

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// The cryptographic cost of one IKE SA setup (IKE_SA_INIT, for ML-KEM one
// IKE_INTERMEDIATE, IKE_AUTH with the first child), per role and per
// primitive, for the four suites the issue compares:
//
//	x25519+PSK          x25519, PSK AUTH
//	p256+ecdsa          ECP-256, ECDSA P-256 RFC 7427 signatures
//	x25519+rsa3072      x25519, RSA-3072 RSASSA-PSS RFC 7427 signatures
//	x25519+mlkem768     x25519 then ML-KEM-768 in IKE_INTERMEDIATE, PSK AUTH
//
// Run side by side, one column per suite:
//
//	go test -run '^$' -bench Handshake -count 8 ./ike/ikecrypto/ > hs.txt
//	benchstat -col /suite hs.txt
//
// op=all is the whole role's work in one loop; the other ops are its
// pieces (role=both: the same work on either side). Certificate chain validation is not included (ike/pki
// benchmarks it); message encoding neither.

type hsSuite struct {
	name  string
	ke    message.DHGroup
	addKE message.DHGroup // DHNone: no IKE_INTERMEDIATE
	key   crypto.Signer   // nil: PSK
	ike   ikecrypto.IKESuite
}

func hsSuites(b *testing.B) []hsSuite {
	base := ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 256, PRF: message.PRFHMACSHA2256}
	with := func(ke, add message.DHGroup) ikecrypto.IKESuite {
		s := base
		s.DH, s.AddKE[0] = ke, add
		return s
	}
	return []hsSuite{
		{"x25519+PSK", message.DHCurve25519, message.DHNone, nil, with(message.DHCurve25519, message.DHNone)},
		{"p256+ecdsa", message.DHECP256, message.DHNone, ecKey(b, elliptic.P256()), with(message.DHECP256, message.DHNone)},
		{"x25519+rsa3072", message.DHCurve25519, message.DHNone, rsaKey(b, 3072), with(message.DHCurve25519, message.DHNone)},
		{"x25519+mlkem768", message.DHCurve25519, message.DHMLKEM768, nil, with(message.DHCurve25519, message.DHMLKEM768)},
	}
}

var (
	hsNi, hsNr = bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	hsPSK      = []byte("a pre-shared key of some length")
	hsSigned   = bytes.Repeat([]byte{0x5a}, 600) // about RealMessage | Nonce | prf(SK_p, ID)
	hsChild    = ikecrypto.ChildSuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128}
	hsPeerHash = []message.HashAlgorithm{message.HashSHA2256, message.HashSHA2384, message.HashSHA2512, message.HashIdentity}
)

// authenticate produces this side's AUTH; check verifies the peer's.
func (s hsSuite) authenticate(b *testing.B) *message.Auth {
	if s.key == nil {
		d, err := ikecrypto.PSKAuth(s.ike.PRF, hsPSK, hsSigned)
		if err != nil {
			b.Fatal(err)
		}
		return &message.Auth{Method: message.AuthSharedKeyMIC, Data: d}
	}
	a, _, err := ikecrypto.Sign(hsSigned, s.key, ikecrypto.SignOptions{PeerHashes: hsPeerHash})
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func (s hsSuite) check(b *testing.B, a *message.Auth) {
	if s.key == nil {
		ok, err := ikecrypto.VerifyPSKAuth(s.ike.PRF, hsPSK, hsSigned, a.Data)
		if err != nil || !ok {
			b.Fatal("PSK AUTH does not verify", err)
		}
		return
	}
	if _, err := ikecrypto.Verify(hsSigned, a, s.key.Public(), ikecrypto.VerifyPolicy{}); err != nil {
		b.Fatal(err)
	}
}

func (s hsSuite) derive(b *testing.B, secret, added []byte) *ikecrypto.IKEKeys {
	k, err := ikecrypto.DeriveIKEKeys(s.ike, secret, hsNi, hsNr, 1, 2)
	if err != nil {
		b.Fatal(err)
	}
	if added != nil {
		if k, err = ikecrypto.DeriveIntermediateIKEKeys(k, added, hsNi, hsNr, 1, 2); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := ikecrypto.DeriveChildKeys(s.ike.PRF, k.SKd(), hsChild, nil, hsNi, hsNr); err != nil {
		b.Fatal(err)
	}
	return k
}

func BenchmarkHandshake(b *testing.B) {
	for _, s := range hsSuites(b) {
		// Inputs from the other side, made once.
		peerKE, _ := ikecrypto.NewKeyExchange(s.ke)
		respData, _, _ := ikecrypto.Respond(s.ke, peerKE.PublicValue())
		var peerKEM ikecrypto.KeyExchange
		var kemCT []byte
		if s.addKE != message.DHNone {
			peerKEM, _ = ikecrypto.NewKeyExchange(s.addKE)
			kemCT, _, _ = ikecrypto.Respond(s.addKE, peerKEM.PublicValue())
		}
		peerAuth := s.authenticate(b)
		secret := bytes.Repeat([]byte{7}, 32)
		var added []byte
		if s.addKE != message.DHNone {
			added = bytes.Repeat([]byte{8}, 32)
		}

		b.Run("suite="+s.name+"/role=responder/op=all", func(b *testing.B) {
			for b.Loop() {
				_, sec, err := ikecrypto.Respond(s.ke, peerKE.PublicValue())
				if err != nil {
					b.Fatal(err)
				}
				var add []byte
				if s.addKE != message.DHNone {
					if _, add, err = ikecrypto.Respond(s.addKE, peerKEM.PublicValue()); err != nil {
						b.Fatal(err)
					}
				}
				s.derive(b, sec, add)
				s.check(b, peerAuth)
				s.authenticate(b)
			}
		})
		b.Run("suite="+s.name+"/role=initiator/op=all", func(b *testing.B) {
			for b.Loop() {
				ke, err := ikecrypto.NewKeyExchange(s.ke)
				if err != nil {
					b.Fatal(err)
				}
				// The responder's reply was made for another key: the
				// computation costs the same.
				sec, err := ke.SharedSecret(respData)
				if err != nil {
					b.Fatal(err)
				}
				var add []byte
				if s.addKE != message.DHNone {
					kem, err := ikecrypto.NewKeyExchange(s.addKE)
					if err != nil {
						b.Fatal(err)
					}
					if add, err = kem.SharedSecret(kemCT); err != nil {
						b.Fatal(err)
					}
				}
				s.derive(b, sec, add)
				s.authenticate(b)
				s.check(b, peerAuth)
			}
		})
		b.Run("suite="+s.name+"/role=responder/op=ke", func(b *testing.B) {
			for b.Loop() {
				if _, _, err := ikecrypto.Respond(s.ke, peerKE.PublicValue()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("suite="+s.name+"/role=initiator/op=ke-keygen", func(b *testing.B) {
			for b.Loop() {
				if _, err := ikecrypto.NewKeyExchange(s.ke); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("suite="+s.name+"/role=initiator/op=ke-shared", func(b *testing.B) {
			for b.Loop() {
				if _, err := peerKE.SharedSecret(respData); err != nil {
					b.Fatal(err)
				}
			}
		})
		if s.addKE != message.DHNone {
			b.Run("suite="+s.name+"/role=responder/op=kem-encaps", func(b *testing.B) {
				for b.Loop() {
					if _, _, err := ikecrypto.Respond(s.addKE, peerKEM.PublicValue()); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("suite="+s.name+"/role=initiator/op=kem-keygen", func(b *testing.B) {
				for b.Loop() {
					if _, err := ikecrypto.NewKeyExchange(s.addKE); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("suite="+s.name+"/role=initiator/op=kem-decaps", func(b *testing.B) {
				for b.Loop() {
					if _, err := peerKEM.SharedSecret(kemCT); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run("suite="+s.name+"/role=both/op=derive", func(b *testing.B) {
			for b.Loop() {
				s.derive(b, secret, added)
			}
		})
		b.Run("suite="+s.name+"/role=both/op=auth-sign", func(b *testing.B) {
			for b.Loop() {
				s.authenticate(b)
			}
		})
		b.Run("suite="+s.name+"/role=both/op=auth-verify", func(b *testing.B) {
			for b.Loop() {
				s.check(b, peerAuth)
			}
		})
	}
}
