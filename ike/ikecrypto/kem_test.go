package ikecrypto_test

import (
	"bytes"
	"crypto/mlkem"
	"errors"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// TestMLKEMPublishedKeys checks key generation against a published,
// independently computed vector: the example keys of RFC 9935's drafts
// (lamps-wg/kyber-certificates, example/ML-KEM-768.pub.txt and
// ML-KEM-1024.pub.txt), which Cloudflare CIRCL derived from the seed
// 00 01 02 ... 3f. (NIST's ACVP keyGen files and C2SP CCTV's vectors as
// stored here still target the FIPS 203 draft, whose key generation lacks
// the domain separator of the final standard; they do not apply.)
func TestMLKEMPublishedKeys(t *testing.T) {
	vals := readVectors(t, "testdata/mlkem-rfc9935-examples.txt")
	seed := make([]byte, mlkem.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	for _, v := range []struct {
		m            message.DHGroup
		name         string
		ekLen, ctLen int
	}{
		{message.DHMLKEM768, "ek768", 1184, 1088},
		{message.DHMLKEM1024, "ek1024", 1568, 1568},
	} {
		t.Run(v.m.String(), func(t *testing.T) {
			k, err := ikecrypto.NewKEMFromSeed(v.m, seed)
			if err != nil {
				t.Fatal(err)
			}
			ek := k.PublicValue()
			if !bytes.Equal(ek, vals[v.name]) {
				t.Fatal("encapsulation key differs from the published one")
			}
			if len(ek) != v.ekLen || ikecrypto.KEDataLen(v.m, true) != v.ekLen || ikecrypto.KEDataLen(v.m, false) != v.ctLen {
				t.Fatalf("sizes: ek %d, KEDataLen %d/%d", len(ek), ikecrypto.KEDataLen(v.m, true), ikecrypto.KEDataLen(v.m, false))
			}
			// The responder encapsulates to it; the initiator gets the same key.
			ct, ss, err := ikecrypto.Respond(v.m, ek)
			if err != nil || len(ct) != v.ctLen || len(ss) != mlkem.SharedKeySize {
				t.Fatalf("Respond: %d-octet ciphertext, %v", len(ct), err)
			}
			ss2, err := k.SharedSecret(ct)
			if err != nil || !bytes.Equal(ss, ss2) {
				t.Fatalf("decapsulated key differs: %v", err)
			}
		})
	}
}

func TestKeyExchangeRoundTrip(t *testing.T) {
	for _, m := range []message.DHGroup{message.DHCurve25519, message.DHECP256, message.DHECP384,
		message.DHECP521, message.DHModp2048, message.DHModp3072, message.DHModp4096,
		message.DHMLKEM768, message.DHMLKEM1024} {
		t.Run(m.String(), func(t *testing.T) {
			if !ikecrypto.SupportedKE(m) {
				t.Fatal("not SupportedKE")
			}
			ke, err := ikecrypto.NewKeyExchange(m)
			if err != nil {
				t.Fatal(err)
			}
			if ke.Method() != m || len(ke.PublicValue()) != ikecrypto.KEDataLen(m, true) {
				t.Fatalf("method %v, KE data of %d octets", ke.Method(), len(ke.PublicValue()))
			}
			resp, rs, err := ikecrypto.Respond(m, ke.PublicValue())
			if err != nil || len(resp) != ikecrypto.KEDataLen(m, false) {
				t.Fatalf("Respond: %d octets, %v", len(resp), err)
			}
			is, err := ke.SharedSecret(resp)
			if err != nil || !bytes.Equal(is, rs) || len(is) == 0 {
				t.Fatalf("secrets differ: %v", err)
			}
			if s := ke.String(); !strings.Contains(s, m.String()) || !strings.Contains(s, "redacted") {
				t.Errorf("String: %q", s)
			}
			// Wrong lengths are typed errors, on both sides.
			long := append(ke.PublicValue(), 0)
			if _, _, err := ikecrypto.Respond(m, long); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
				t.Errorf("Respond with %d octets: %v", len(long), err)
			}
			if _, err := ke.SharedSecret(resp[1:]); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
				t.Errorf("SharedSecret with %d octets: %v", len(resp)-1, err)
			}
		})
	}
	for _, m := range []message.DHGroup{message.DHMLKEM512, message.DHCurve448, 0} {
		if _, err := ikecrypto.NewKeyExchange(m); !errors.Is(err, ikecrypto.ErrUnsupported) {
			t.Errorf("NewKeyExchange(%v): %v", m, err)
		}
		if _, _, err := ikecrypto.Respond(m, make([]byte, 32)); !errors.Is(err, ikecrypto.ErrUnsupported) {
			t.Errorf("Respond(%v): %v", m, err)
		}
		if ikecrypto.SupportedKE(m) || ikecrypto.KEDataLen(m, true) != 0 {
			t.Errorf("%v reported supported", m)
		}
	}
}

// TestMLKEMInputChecks: the responder refuses an encapsulation key whose
// coefficients are not reduced modulo q (FIPS 203 §7.2's modulus check);
// a tampered ciphertext decapsulates without error to a different key
// (implicit rejection, FIPS 203 §6.3).
func TestMLKEMInputChecks(t *testing.T) {
	for _, m := range []message.DHGroup{message.DHMLKEM768, message.DHMLKEM1024} {
		k, err := ikecrypto.NewKEM(m)
		if err != nil {
			t.Fatal(err)
		}
		ek := k.PublicValue()
		bad := bytes.Clone(ek)
		bad[0], bad[1] = 0xff, bad[1]|0x0f // first 12-bit coefficient 4095 >= q = 3329
		_, _, err = ikecrypto.Respond(m, bad)
		var pe *ikecrypto.PublicValueError
		if !errors.As(err, &pe) || pe.Group != m {
			t.Fatalf("%v: unreduced encapsulation key: %v", m, err)
		}
		ct, ss, err := ikecrypto.Respond(m, ek)
		if err != nil {
			t.Fatal(err)
		}
		ct[len(ct)/2] ^= 0x20
		ss2, err := k.SharedSecret(ct)
		if err != nil || bytes.Equal(ss, ss2) || len(ss2) != mlkem.SharedKeySize {
			t.Fatalf("%v: tampered ciphertext: %v", m, err)
		}
	}
	if _, err := ikecrypto.NewKEMFromSeed(message.DHMLKEM768, make([]byte, 63)); err == nil {
		t.Error("63-octet seed accepted")
	}
}
