package ikecrypto_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

var fuzzGroups = []message.DHGroup{message.DHCurve25519, message.DHECP256, message.DHModp2048, message.DHECP384, message.DHECP521, message.DHModp3072, message.DHModp4096}

// FuzzPublicValue feeds arbitrary KE data to the validation and the secret
// computation: they must agree, never panic, and fail only with typed errors.
func FuzzPublicValue(f *testing.F) {
	for i, g := range fuzzGroups {
		d, err := ikecrypto.NewDH(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), d.PublicValue())
		f.Add(uint8(i), make([]byte, ikecrypto.PublicValueLen(g)))
	}
	f.Add(uint8(1), bytes.Repeat([]byte{0xff}, 64))
	privs := make([]*ikecrypto.DH, len(fuzzGroups))
	for i, g := range fuzzGroups {
		privs[i], _ = ikecrypto.NewDH(g)
	}
	f.Fuzz(func(t *testing.T, gi uint8, peer []byte) {
		d := privs[int(gi)%len(privs)]
		checkErr := ikecrypto.CheckPublicValue(d.Group(), peer)
		s, err := d.SharedSecret(peer)
		if err != nil {
			if !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
				t.Fatalf("untyped error: %v", err)
			}
			// Only X25519 may pass the check and fail the computation
			// (low-order points).
			if checkErr == nil && d.Group() != message.DHCurve25519 {
				t.Fatalf("%v: check passed but secret failed: %v", d.Group(), err)
			}
			return
		}
		if checkErr != nil {
			t.Fatalf("secret computed for a value the check rejects: %v", checkErr)
		}
		if len(s) == 0 || bytes.Equal(s, make([]byte, len(s))) {
			t.Fatalf("empty or zero secret")
		}
	})
}

// FuzzCipherOpen feeds arbitrary SK bodies to every cipher (they must fail
// cleanly) and seals arbitrary plaintexts (they must open again).
func FuzzCipherOpen(f *testing.F) {
	f.Add(uint8(0), []byte("head"), []byte("body"), []byte("plaintext"))
	f.Add(uint8(4), make([]byte, 32), make([]byte, 48), make([]byte, 32))
	f.Add(uint8(3), []byte{}, make([]byte, 24), []byte{})
	type pair struct{ a, b message.Cipher }
	var cs []pair
	for _, sc := range cipherSuites {
		el, il, err := ikecrypto.IKESuite{Encr: sc.encr, EncrKeyBits: sc.bits, Integ: sc.integ}.KeyLengths()
		if err != nil {
			f.Fatal(err)
		}
		ek, ik := bytes.Repeat([]byte{0x3c}, el), bytes.Repeat([]byte{0xc3}, il)
		// a keeps what it builds (a handshake's cipher), b is idle.
		keys, err := ikecrypto.NewIKEKeys(ikecrypto.IKESuite{Encr: sc.encr, EncrKeyBits: sc.bits, Integ: sc.integ},
			nil, ik, ik, ek, ek, nil, nil)
		if err != nil {
			f.Fatal(err)
		}
		a, _, err := keys.HandshakeCiphers(true)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := ikecrypto.NewCipher(sc.encr, sc.bits, ek, sc.integ, ik)
		cs = append(cs, pair{a, b})
	}
	f.Fuzz(func(t *testing.T, ci uint8, head, body, pt []byte) {
		c := cs[int(ci)%len(cs)]
		if out, err := c.a.Open(nil, head, body); err == nil {
			// A forged body verified: only possible if it was sealed by us,
			// which the fuzzer cannot do without the key.
			t.Fatalf("random body authenticated: %x", out)
		} else if !errors.Is(err, ikecrypto.ErrAuthentication) {
			t.Fatalf("untyped error %v", err)
		}
		if bs := c.a.BlockSize(); len(pt)%bs != 0 {
			pt = append(pt, make([]byte, bs-len(pt)%bs)...)
		}
		sealed, err := c.a.Seal(nil, head, pt)
		if err != nil {
			// Only CBC refuses, and only an empty plaintext (the SK payload
			// always has a Pad Length octet).
			if c.a.BlockSize() == 1 || len(pt) != 0 {
				t.Fatal(err)
			}
			return
		}
		if len(sealed) != c.a.IVSize()+len(pt)+c.a.ICVSize() {
			t.Fatalf("sealed %d octets for %d", len(sealed), len(pt))
		}
		got, err := c.b.Open(nil, head, sealed)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzKEData feeds arbitrary KE payload data to both sides of every key
// exchange method: the responder's Respond (the initiator's data) and the
// initiator's SharedSecret (the responder's data). They must never panic,
// fail only with typed errors, and a success must give a non-empty secret.
func FuzzKEData(f *testing.F) {
	methods := []message.DHGroup{message.DHCurve25519, message.DHECP256, message.DHECP384,
		message.DHECP521, message.DHModp2048, message.DHModp3072, message.DHModp4096,
		message.DHMLKEM768, message.DHMLKEM1024}
	kes := make([]ikecrypto.KeyExchange, len(methods))
	for i, m := range methods {
		ke, err := ikecrypto.NewKeyExchange(m)
		if err != nil {
			f.Fatal(err)
		}
		kes[i] = ke
		f.Add(uint8(i), ke.PublicValue())
		if resp, _, err := ikecrypto.Respond(m, ke.PublicValue()); err == nil {
			f.Add(uint8(i), resp)
		}
	}
	f.Fuzz(func(t *testing.T, mi uint8, data []byte) {
		ke := kes[int(mi)%len(kes)]
		m := ke.Method()
		resp, s, err := ikecrypto.Respond(m, data)
		if err != nil {
			if !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
				t.Fatalf("%v Respond: untyped error %v", m, err)
			}
		} else if len(s) == 0 || len(resp) != ikecrypto.KEDataLen(m, false) {
			t.Fatalf("%v Respond: %d-octet secret, %d-octet reply", m, len(s), len(resp))
		}
		s, err = ke.SharedSecret(data)
		if err != nil {
			if !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
				t.Fatalf("%v SharedSecret: untyped error %v", m, err)
			}
		} else if len(s) == 0 {
			t.Fatalf("%v SharedSecret: empty secret", m)
		}
	})
}

// FuzzVerify feeds arbitrary AUTH payloads (any method, any data) to
// Verify with RSA, ECDSA and Ed25519 keys: no panic, and every failure a
// *SignatureError wrapping ErrSignature or ErrSignatureScheme.
func FuzzVerify(f *testing.F) {
	rsaK := rsaKey(f, 2048)
	ecK := ecKey(f, elliptic.P256())
	_, edK, _ := ed25519.GenerateKey(rand.Reader)
	keys := []crypto.Signer{rsaK, ecK, edK}
	octets := []byte("signed octets")
	for _, k := range keys {
		for _, o := range []ikecrypto.SignOptions{{}, {PeerHashes: allHashes}, {PeerHashes: allHashes, RSAPKCS1: true}} {
			if a, _, err := ikecrypto.Sign(octets, k, o); err == nil {
				f.Add(uint8(a.Method), a.Data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, method uint8, data []byte) {
		for _, k := range keys {
			_, err := ikecrypto.Verify(octets, &message.Auth{Method: message.AuthMethod(method), Data: data}, k.Public(), ikecrypto.VerifyPolicy{})
			if err == nil {
				continue // a seed, or a forgery the fuzzer cannot make
			}
			var se *ikecrypto.SignatureError
			if !errors.As(err, &se) || !(errors.Is(err, ikecrypto.ErrSignature) || errors.Is(err, ikecrypto.ErrSignatureScheme)) {
				t.Fatalf("untyped error %v", err)
			}
		}
	})
}
