package ikecrypto_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// RFC 2202 §3 test cases 1, 2 and 6 for PRF_HMAC_SHA1; RFC 2404 §3 says
// AUTH_HMAC_SHA1_96 is the first 96 bits of the same HMAC.
var rfc2202 = []struct {
	key, data []byte
	mac       string
}{
	{bytes.Repeat([]byte{0x0b}, 20), []byte("Hi There"), "b617318655057264e28bc0b6fb378c8ef146be00"},
	{[]byte("Jefe"), []byte("what do ya want for nothing?"), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
	{bytes.Repeat([]byte{0xaa}, 80), []byte("Test Using Larger Than Block-Size Key - Hash Key First"),
		"aa4ae5e15272d00e95705637ce8a3b55ed402112"},
}

func TestPRFHMACSHA1RFC2202(t *testing.T) {
	p, err := ikecrypto.NewPRF(message.PRFHMACSHA1)
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 20 || p.ID() != message.PRFHMACSHA1 {
		t.Fatalf("size %d id %v", p.Size(), p.ID())
	}
	for i, c := range rfc2202 {
		if got := hex.EncodeToString(p.Sum(c.key, c.data)); got != c.mac {
			t.Errorf("case %d: %s", i+1, got)
		}
	}
	// A SHA-1 suite derives keys: SK_d, SK_pi and SK_pr of 20 octets, SK_a
	// of 20 (RFC 2404 §3).
	s := ikecrypto.IKESuite{Encr: message.EncrAESCBC, EncrKeyBits: 128, Integ: message.IntegHMACSHA196,
		PRF: message.PRFHMACSHA1, DH: message.DHModp2048}
	k, err := ikecrypto.DeriveIKEKeys(s, []byte("g^ir"), bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.SKd()) != 20 || len(k.SKai()) != 20 || len(k.SKei()) != 16 || len(k.SKpr()) != 20 {
		t.Fatalf("key lengths %d %d %d %d", len(k.SKd()), len(k.SKai()), len(k.SKei()), len(k.SKpr()))
	}
}

// TestAESCBCHMACSHA196 opens an SK body whose ICV is the RFC 2202 case 2
// construction truncated to 96 bits (RFC 2404), and seals and opens whole
// messages with the suite.
func TestAESCBCHMACSHA196(t *testing.T) {
	integKey := bytes.Repeat([]byte{0x0b}, 20)
	encKey := h(t, "06a9214036b8a15b512e03d534120006")
	ci, err := ikecrypto.NewCipher(message.EncrAESCBC, 128, encKey, message.IntegHMACSHA196, integKey)
	if err != nil {
		t.Fatal(err)
	}
	if ci.ICVSize() != 12 || ci.IVSize() != 16 {
		t.Fatalf("ICV %d IV %d", ci.ICVSize(), ci.IVSize())
	}
	// RFC 3602 case 1 ciphertext, with "Hi There" as the head: the ICV is
	// HMAC-SHA1(key, head | IV | ciphertext) cut to 12 octets.
	head := []byte("Hi There")
	iv, ct := h(t, "3dafba429d9eb430b422da802c9fac41"), h(t, "e353779c1079aeb82708942dbe77181a")
	m := hmac.New(sha1.New, integKey)
	m.Write(head)
	m.Write(iv)
	m.Write(ct)
	body := append(append(bytes.Clone(iv), ct...), m.Sum(nil)[:12]...)
	pt, err := ci.Open(nil, head, body)
	if err != nil || string(pt) != "Single block msg" {
		t.Fatalf("open: %q %v", pt, err)
	}
	body[len(body)-1] ^= 1
	if _, err := ci.Open(nil, head, body); !errors.Is(err, ikecrypto.ErrAuthentication) {
		t.Fatalf("bad ICV: %v", err)
	}
	sealed, err := ci.Seal(nil, head, make([]byte, 32))
	if err != nil || len(sealed) != 16+32+12 {
		t.Fatalf("seal: %d octets, %v", len(sealed), err)
	}
	if pt, err := ci.Open(nil, head, sealed); err != nil || !bytes.Equal(pt, make([]byte, 32)) {
		t.Fatalf("round trip: %v", err)
	}
}

// TestCCMChildSuites: AES-CCM is an ESP transform (keys with RFC 4309's
// 3-octet salt, as Linux's rfc4309(ccm(aes)) takes them) and is refused for
// the IKE SA.
func TestCCMChildSuites(t *testing.T) {
	for _, e := range []message.EncrID{message.EncrAESCCM8, message.EncrAESCCM12, message.EncrAESCCM16} {
		for _, bits := range []int{128, 192, 256} {
			s := ikecrypto.ChildSuite{Encr: e, EncrKeyBits: bits}
			el, il, err := s.KeyLengths()
			if err != nil || el != bits/8+3 || il != 0 {
				t.Errorf("%v/%d: %d %d %v", e, bits, el, il, err)
			}
			k, err := ikecrypto.DeriveChildKeys(message.PRFHMACSHA2256, make([]byte, 32), s, nil, make([]byte, 16), make([]byte, 16))
			if err != nil || len(k.EncrI) != bits/8+3 || len(k.IntegI) != 0 {
				t.Errorf("%v/%d: derive: %v", e, bits, err)
			}
			ike := ikecrypto.IKESuite{Encr: e, EncrKeyBits: bits, PRF: message.PRFHMACSHA2256, DH: message.DHCurve25519}
			if err := ike.Validate(); !errors.Is(err, ikecrypto.ErrUnsupported) {
				t.Errorf("%v/%d for IKE: %v", e, bits, err)
			}
		}
		if err := (ikecrypto.ChildSuite{Encr: e, EncrKeyBits: 64}).Validate(); !errors.Is(err, ikecrypto.ErrProposal) {
			t.Errorf("%v/64: %v", e, err)
		}
		if err := (ikecrypto.ChildSuite{Encr: e, EncrKeyBits: 128, Integ: message.IntegHMACSHA196}).Validate(); !errors.Is(err, ikecrypto.ErrProposal) {
			t.Errorf("%v with integrity: %v", e, err)
		}
	}
	// An ESP proposal carrying CCM is read as a suite.
	p := &message.Proposal{Protocol: message.ProtocolESP, SPI: []byte{1, 2, 3, 4}, Transforms: []message.Transform{
		message.EncrTransform(message.EncrAESCCM16, 256), message.ESNTransform(message.ESNNo)}}
	s, err := ikecrypto.ChildSuiteFromProposal(p)
	if err != nil || s.Encr != message.EncrAESCCM16 || s.EncrKeyBits != 256 {
		t.Fatalf("%v %v", s, err)
	}
}
