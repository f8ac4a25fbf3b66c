package ikecrypto_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// The GCM test vectors of McGrew and Viega, "The Galois/Counter Mode of
// Operation" (the NIST GCM submission), test cases 4 and 16, laid out as
// RFC 5282 lays out an SK payload: salt = the first 4 octets of the 12-octet
// IV (part of the key material), explicit IV = the other 8, AAD = head.
func TestAESGCMVectors(t *testing.T) {
	pt := h(t, `d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
		1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39`)
	aad := h(t, "feedfacedeadbeeffeedfacedeadbeefabaddad2")
	iv := h(t, "cafebabefacedbaddecaf888")
	cases := []struct {
		bits     int
		key, ct  string
		tag      string
		testCase int
	}{
		{128, "feffe9928665731c6d6a8f9467308308",
			`42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
			21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091`,
			"5bc94fbc3221a5db94fae95ae7121a47", 4},
		{256, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
			`522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
			8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662`,
			"76fc6ece0f4e1768cddf8853bb2d551b", 16},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("case%d", c.testCase), func(t *testing.T) {
			km := append(h(t, c.key), iv[:4]...)
			ci, err := ikecrypto.NewCipher(message.EncrAESGCM16, c.bits, km, message.IntegNone, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ci.IVSize() != 8 || ci.ICVSize() != 16 || ci.BlockSize() != 1 {
				t.Fatalf("sizes %d %d %d", ci.IVSize(), ci.ICVSize(), ci.BlockSize())
			}
			body := append(append(append([]byte(nil), iv[4:]...), h(t, c.ct)...), h(t, c.tag)...)
			got, err := ci.Open(nil, aad, body)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("open: %x %v", got, err)
			}
			body[len(body)-1] ^= 1
			if _, err := ci.Open(nil, aad, body); !errors.Is(err, ikecrypto.ErrAuthentication) {
				t.Fatalf("bad tag: %v", err)
			}
		})
	}
}

// RFC 8439 §2.8.2 (the AEAD_CHACHA20_POLY1305 example), laid out as
// RFC 7634 §2 lays out an SK payload: nonce = salt (4 octets, after the
// 32-octet key) | IV (8 octets).
func TestChaCha20Poly1305RFC8439(t *testing.T) {
	key := h(t, "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
	nonce := h(t, "070000004041424344454647")
	aad := h(t, "50515253c0c1c2c3c4c5c6c7")
	pt := []byte("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.")
	ct := h(t, `d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
		3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
		92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
		3ff4def08e4b7a9de576d26586cec64b6116`)
	tag := h(t, "1ae10b594f09e26a7e902ecbd0600691")
	ci, err := ikecrypto.NewCipher(message.EncrChaCha20Poly1305, 0, append(key, nonce[:4]...), message.IntegNone, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := append(append(append([]byte(nil), nonce[4:]...), ct...), tag...)
	got, err := ci.Open(nil, aad, body)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %q %v", got, err)
	}
	aad[0] ^= 1
	if _, err := ci.Open(nil, aad, body); !errors.Is(err, ikecrypto.ErrAuthentication) {
		t.Fatalf("bad AAD: %v", err)
	}
}

// RFC 3602 §4 cases 1 and 2, with the ICV of RFC 7296 §3.14 and RFC 4868
// (HMAC-SHA-256 over the message up to the ICV, truncated to 128 bits)
// computed independently here.
func TestAESCBCRFC3602(t *testing.T) {
	cases := []struct{ key, iv, pt, ct string }{
		{"06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41",
			"53696e676c6520626c6f636b206d7367", // "Single block msg"
			"e353779c1079aeb82708942dbe77181a"},
		{"c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58",
			"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
			"d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"},
	}
	integKey := bytes.Repeat([]byte{0x42}, 32)
	head := []byte("IKE header and SK payload header")
	for i, c := range cases {
		ci, err := ikecrypto.NewCipher(message.EncrAESCBC, 128, h(t, c.key), message.IntegHMACSHA2256128, integKey)
		if err != nil {
			t.Fatal(err)
		}
		if ci.IVSize() != 16 || ci.ICVSize() != 16 || ci.BlockSize() != 16 {
			t.Fatalf("sizes %d %d %d", ci.IVSize(), ci.ICVSize(), ci.BlockSize())
		}
		signed := append(append(append([]byte(nil), head...), h(t, c.iv)...), h(t, c.ct)...)
		m := hmac.New(sha256.New, integKey)
		m.Write(signed)
		body := append(signed[len(head):], m.Sum(nil)[:16]...)
		got, err := ci.Open(nil, head, body)
		if err != nil || !bytes.Equal(got, h(t, c.pt)) {
			t.Fatalf("case %d: %x %v", i+1, got, err)
		}
		for _, j := range []int{0, 16, len(body) - 1} {
			bad := append([]byte(nil), body...)
			bad[j] ^= 0x80
			if _, err := ci.Open(nil, head, bad); !errors.Is(err, ikecrypto.ErrAuthentication) {
				t.Errorf("case %d, byte %d flipped: %v", i+1, j, err)
			}
		}
		if _, err := ci.Open(nil, head, body[:len(body)-1]); !errors.Is(err, ikecrypto.ErrAuthentication) {
			t.Errorf("misaligned: %v", err)
		}
	}
}

type suiteCase struct {
	name  string
	encr  message.EncrID
	bits  int
	integ message.IntegID
}

var cipherSuites = []suiteCase{
	{"aes128gcm16", message.EncrAESGCM16, 128, message.IntegNone},
	{"aes192gcm16", message.EncrAESGCM16, 192, message.IntegNone},
	{"aes256gcm16", message.EncrAESGCM16, 256, message.IntegNone},
	{"chacha20poly1305", message.EncrChaCha20Poly1305, 0, message.IntegNone},
	{"aes128-sha256", message.EncrAESCBC, 128, message.IntegHMACSHA2256128},
	{"aes256-sha256", message.EncrAESCBC, 256, message.IntegHMACSHA2256128},
	{"aes256-sha384", message.EncrAESCBC, 256, message.IntegHMACSHA2384192},
	{"aes256-sha512", message.EncrAESCBC, 256, message.IntegHMACSHA2512256},
	{"aes128-sha1", message.EncrAESCBC, 128, message.IntegHMACSHA196},
}

// TestCipherSK seals and opens whole messages through the message codec
// for every suite, in both directions of a derived IKE SA.
func TestCipherSK(t *testing.T) {
	for _, sc := range cipherSuites {
		t.Run(sc.name, func(t *testing.T) {
			s := ikecrypto.IKESuite{Encr: sc.encr, EncrKeyBits: sc.bits, Integ: sc.integ, PRF: message.PRFHMACSHA2256, DH: message.DHCurve25519}
			k, err := ikecrypto.DeriveIKEKeys(s, []byte("g^ir"), bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), 1, 2)
			if err != nil {
				t.Fatal(err)
			}
			iOut, iIn, err := k.Ciphers(true)
			if err != nil {
				t.Fatal(err)
			}
			rOut, rIn, _ := k.Ciphers(false)
			m := &message.Message{
				Header: message.Header{SPIi: 1, SPIr: 2, Exchange: message.IKE_AUTH, Initiator: true, MessageID: 1},
				Payloads: []message.Payload{
					&message.ID{IDType: message.IDFQDN, Data: []byte("initiator.example")},
					&message.Auth{Method: message.AuthSharedKeyMIC, Data: bytes.Repeat([]byte{9}, 32)},
				},
			}
			var ivs [][]byte
			for _, dir := range []struct {
				out, in, wrong message.Cipher
			}{{iOut, rIn, iIn}, {rOut, iIn, rIn}} {
				for range 2 {
					b, err := m.EncodeEncrypted(dir.out)
					if err != nil {
						t.Fatal(err)
					}
					ivs = append(ivs, b[message.HeaderLen+4:message.HeaderLen+4+dir.out.IVSize()])
					p, err := message.Parse(b)
					if err != nil {
						t.Fatal(err)
					}
					if err := p.Decrypt(dir.in); err != nil {
						t.Fatalf("decrypt: %v", err)
					}
					if len(p.Payloads) != 2 || p.Payloads[0].(*message.ID).String() != "initiator.example" {
						t.Fatalf("payloads %v", p)
					}
					q, _ := message.Parse(b)
					if err := q.Decrypt(dir.wrong); !errors.Is(err, message.ErrIntegrity) {
						t.Fatalf("other direction's key: %v", err)
					}
					if n := len(b) - message.HeaderLen - 4 - dir.out.IVSize() - dir.out.ICVSize(); n%dir.out.BlockSize() != 0 {
						t.Fatalf("ciphertext of %d octets", n)
					}
				}
			}
			for i := range ivs {
				for j := range i {
					if bytes.Equal(ivs[i], ivs[j]) {
						t.Fatalf("IV repeated: %x", ivs[i])
					}
				}
			}
		})
	}
}

func TestNewCipherErrors(t *testing.T) {
	cases := []struct {
		encr      message.EncrID
		bits      int
		ek        int
		integ     message.IntegID
		ik        int
		unsupport bool
	}{
		{message.EncrAESGCM16, 128, 16, message.IntegNone, 0, false}, // salt missing
		{message.EncrAESGCM16, 100, 16, message.IntegNone, 0, false},
		{message.EncrAESGCM16, 128, 20, message.IntegHMACSHA2256128, 32, false},
		{message.EncrAESCBC, 128, 16, message.IntegNone, 0, true},
		{message.EncrAESCBC, 128, 16, message.IntegHMACSHA2256128, 16, false},
		{message.EncrChaCha20Poly1305, 128, 36, message.IntegNone, 0, false},
		{message.EncrDES3, 0, 24, message.IntegHMACSHA2256128, 32, true},
		{message.EncrAESCBC, 128, 16, message.IntegHMACMD596, 16, true},
		{message.EncrAESCCM16, 128, 19, message.IntegNone, 0, true}, // ESP only
	}
	for i, c := range cases {
		_, err := ikecrypto.NewCipher(c.encr, c.bits, make([]byte, c.ek), c.integ, make([]byte, c.ik))
		if err == nil {
			t.Errorf("case %d: accepted", i)
		} else if c.unsupport != errors.Is(err, ikecrypto.ErrUnsupported) {
			t.Errorf("case %d: %v", i, err)
		}
	}
}
