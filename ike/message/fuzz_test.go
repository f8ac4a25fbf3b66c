package message

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
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
	// A CP payload (CFG_REQUEST for an IPv4 address and DNS) in a chain.
	f.Add(byte(PayloadCP), []byte{0, 0, 0, 16, 1, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0})
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

// FuzzCertPayloads decodes arbitrary CERT and CERTREQ bodies: a body that
// decodes must encode to the same octets.
func FuzzCertPayloads(f *testing.F) {
	f.Add(true, []byte{byte(CertX509), 0x30, 0x00})
	f.Add(true, append([]byte{byte(CertHashURLX509)}, make([]byte, 30)...))
	f.Add(false, append([]byte{byte(CertX509)}, make([]byte, 40)...))
	f.Add(false, []byte{byte(CertX509)})
	f.Fuzz(func(t *testing.T, cert bool, body []byte) {
		typ := PayloadCERTREQ
		if cert {
			typ = PayloadCERT
		}
		if len(body) > 0xffff-4 {
			return
		}
		chain := append([]byte{0, 0, byte((len(body) + 4) >> 8), byte(len(body) + 4)}, body...)
		ps, err := ParsePayloads(typ, chain)
		if err != nil {
			checkParseError(t, err)
			return
		}
		b, err := ps[0].appendBody(nil)
		if err != nil || !bytes.Equal(b, body) {
			t.Fatalf("re-encode: %x / %x, %v", b, body, err)
		}
		if c, ok := ps[0].(*CertReq); ok {
			if n := len(c.Hashes()); c.Encoding == CertX509 && (n != len(c.Authorities)/20 || (c.CheckHashes() == nil) != (n*20 == len(c.Authorities))) {
				t.Fatalf("%d hashes in %d octets, check %v", n, len(c.Authorities), c.CheckHashes())
			}
		}
	})
}

// FuzzSignatureAuth parses arbitrary method-14 AUTH data and
// SIGNATURE_HASH_ALGORITHMS data: what parses must encode back to itself.
func FuzzSignatureAuth(f *testing.F) {
	f.Add([]byte{15, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00, 1, 2, 3})
	f.Add([]byte{7, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 9})
	f.Add([]byte{0, 2, 0, 3, 0, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSignatureAuth(data)
		if err != nil {
			checkParseError(t, err)
		} else if b, err := s.Bytes(); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("re-encode: %v", err)
		}
		hs, err := ParseSignatureHashAlgorithms(data)
		if err != nil {
			checkParseError(t, err)
		} else if !bytes.Equal(NewSignatureHashAlgorithms(hs...).Data, data) {
			t.Fatal("hash list does not re-encode")
		}
	})
}

// FuzzReassembly drives a Reassembler with fragments whose numbers,
// totals, message IDs, lengths and arrival times come from the input,
// against small limits: every refusal is a *FragmentError, the state never
// exceeds the limits, and a completed message is exactly the fragments
// joined in order.
func FuzzReassembly(f *testing.F) {
	f.Add([]byte{1, 3, 0, 5, 0, 2, 3, 0, 5, 0, 3, 3, 0, 5, 0})
	f.Add([]byte{2, 2, 0, 1, 0, 1, 2, 0, 1, 0, 1, 4, 0, 9, 1})
	f.Add([]byte{1, 1, 1, 0, 7, 1, 2, 1, 0, 7, 2, 2, 1, 3, 7})
	const maxFrags, maxSize = 8, 64
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := NewReassembler(ReassemblyLimits{MaxFragments: maxFrags, MaxSize: maxSize, Timeout: 10 * time.Second})
		now := time.Unix(0, 0)
		for len(ops) >= 5 {
			num, total, id, n, dt := uint16(ops[0]%10), uint16(ops[1]%10), uint32(ops[2]%2), int(ops[3]%40), ops[4]
			ops = ops[5:]
			now = now.Add(time.Duration(dt) * time.Second / 8)
			fr := &EncryptedFragment{Number: num, Total: total}
			if num == 1 {
				fr.NextPayload = PayloadNotify
			}
			pt := bytes.Repeat([]byte{byte(num)}, n)
			h := Header{Exchange: IKE_AUTH, MessageID: id}
			first, inner, done, err := r.Add(h, fr, pt, now)
			if err != nil {
				var fe *FragmentError
				if !errors.As(err, &fe) || !slices.ContainsFunc([]error{ErrFragmentLimit, ErrFragmentOtherMessage,
					ErrFragmentDuplicate, ErrFragmentStale, ErrFragmentInvalid}, func(e error) bool { return errors.Is(err, e) }) {
					t.Fatalf("untyped error %v", err)
				}
				continue
			}
			if r.size > maxSize || len(r.parts) > maxFrags {
				t.Fatalf("state over the limits: %d octets, %d slots", r.size, len(r.parts))
			}
			if !done {
				continue
			}
			if first != PayloadNotify || len(inner) > maxSize {
				t.Fatalf("completed message: first %v, %d octets", first, len(inner))
			}
			// The joined plaintext is made of runs of the fragment numbers
			// in increasing order.
			for i := 1; i < len(inner); i++ {
				if inner[i] < inner[i-1] {
					t.Fatalf("fragments joined out of order: %x", inner)
				}
			}
			if _, active := r.Active(); active {
				t.Fatal("still active after completion")
			}
		}
	})
}
