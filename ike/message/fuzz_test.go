package message

import (
	"bytes"
	"errors"
	"testing"
)

// checkStable asserts that a message that parsed re-encodes to bytes that
// parse to the same encoding again (encode∘parse is idempotent), and that
// every error is a *ParseError with a sentinel.
func checkStable(t *testing.T, m *Message) {
	b1, err := m.Encode()
	if err != nil {
		// A parsed message can always be encoded.
		t.Fatalf("re-encode a parsed message: %v", err)
	}
	m2, err := Parse(b1)
	if err != nil {
		t.Fatalf("parse our own encoding: %v\n%x", err, b1)
	}
	b2, err := m2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encoding not stable:\n%x\n%x", b1, b2)
	}
}

func checkParseError(t *testing.T, err error) {
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error is not a *ParseError: %T %v", err, err)
	}
	for _, s := range []error{ErrTruncated, ErrInvalidSyntax, ErrUnsupportedCritical, ErrInvalidMajorVersion, ErrObsoleteVersion, ErrIntegrity} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error wraps no sentinel: %v", err)
}

func FuzzParse(f *testing.F) {
	for _, b := range goldenMessages(f) {
		f.Add(b)
	}
	for _, b := range handMessages(f) {
		f.Add(b)
	}
	c := testCipher{key: 0x5a, ivLen: 8, bs: 1, icv: 16}
	sk, err := handAuth().EncodeEncrypted(c)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sk)
	frags, err := handAuth().EncodeFragments(c, 150)
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range frags {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			checkParseError(t, err)
			return
		}
		if m.Length != uint32(len(b)) || !bytes.Equal(m.Raw(), b) {
			t.Fatalf("length %d / raw differ for %d input bytes", m.Length, len(b))
		}
		checkStable(t, m)
		// Opening an SK or SKF payload must fail cleanly or succeed.
		if _, _, err := m.OpenFragment(c); err != nil && !errors.Is(err, ErrNotEncrypted) {
			checkParseError(t, err)
		}
		if err := m.Decrypt(c); err != nil && !errors.Is(err, ErrNotEncrypted) {
			checkParseError(t, err)
		}
	})
}

func FuzzParsePayloads(f *testing.F) {
	for _, b := range handMessages(f) {
		m, err := Parse(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(m.NextPayload), b[HeaderLen:])
	}
	for _, b := range goldenMessages(f) {
		f.Add(b[16], b[HeaderLen:])
	}
	f.Fuzz(func(t *testing.T, first byte, b []byte) {
		ps, err := ParsePayloads(PayloadType(first), b)
		if err != nil {
			checkParseError(t, err)
			if !err.(*ParseError).InSK {
				t.Fatalf("InSK not set: %v", err)
			}
			return
		}
		m := &Message{Header: Header{Exchange: IKE_AUTH}, Payloads: ps}
		for _, c := range []Cipher{
			testCipher{key: 0x33, ivLen: 8, bs: 1, icv: 16},
			testCipher{key: 0x44, ivLen: 16, bs: 16, icv: 12},
		} {
			enc, err := m.EncodeEncrypted(c)
			if err != nil {
				var ee *EncodeError
				if errors.As(err, &ee) {
					return // too large for one SK payload
				}
				t.Fatal(err)
			}
			m2, err := Parse(enc)
			if err != nil {
				t.Fatalf("parse encrypted: %v", err)
			}
			if err := m2.Decrypt(c); err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			checkStable(t, &Message{Header: m2.Header, Payloads: m2.Payloads})
			if len(m2.Payloads) != len(ps) || !m2.Protected {
				t.Fatalf("%d payloads after round trip, want %d", len(m2.Payloads), len(ps))
			}
		}
	})
}
