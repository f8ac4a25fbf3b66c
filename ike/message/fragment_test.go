package message

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// bigAuth is an IKE_AUTH request large enough to need several fragments:
// a certificate chain's worth of CERT payloads.
func bigAuth() *Message {
	m := handAuth()
	m.Payloads = append(m.Payloads,
		&Cert{Encoding: CertX509, Data: bytes.Repeat([]byte{0x30}, 900)},
		&Cert{Encoding: CertX509, Data: bytes.Repeat([]byte{0x31}, 700)},
		NewCertReq([20]byte{9}, [20]byte{8}))
	return m
}

// openFragments encodes m in fragments of at most maxLen octets and opens
// each as a receiver would.
func openFragments(t *testing.T, m *Message, c Cipher, maxLen int) ([]Header, []*EncryptedFragment, [][]byte) {
	t.Helper()
	frags, err := m.EncodeFragments(c, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	var hs []Header
	var fs []*EncryptedFragment
	var pts [][]byte
	for _, b := range frags {
		p, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		f, pt, err := p.OpenFragment(c)
		if err != nil {
			t.Fatal(err)
		}
		hs, fs, pts = append(hs, p.Header), append(fs, f), append(pts, pt)
	}
	return hs, fs, pts
}

func TestReassembleShuffledWithDuplicates(t *testing.T) {
	c := testCipher{key: 0x5a, ivLen: 16, bs: 16, icv: 12}
	m := bigAuth()
	hs, fs, pts := openFragments(t, m, c, 300)
	if len(fs) < 6 {
		t.Fatalf("%d fragments", len(fs))
	}
	r := NewReassembler(ReassemblyLimits{})
	n := len(fs)
	perm := rand.Perm(n)
	// All but the last, two retransmitted ones, then the last.
	order := append(append(perm[:n-1:n-1], perm[0], perm[n/2]), perm[n-1])
	now := time.Unix(1000, 0)
	var first PayloadType
	var inner []byte
	done := false
	for k, i := range order {
		var err error
		first, inner, done, err = r.Add(hs[i], fs[i], pts[i], now)
		switch {
		case k == n-1 || k == n: // the retransmissions
			if !errors.Is(err, ErrFragmentDuplicate) || done {
				t.Fatalf("duplicate fragment %d: %v", i+1, err)
			}
		case err != nil:
			t.Fatalf("fragment %d: %v", i+1, err)
		case done != (k == len(order)-1):
			t.Fatalf("done=%v after %d of %d", done, k+1, len(order))
		}
	}
	if _, active := r.Active(); active {
		t.Fatal("reassembler not emptied")
	}
	ps, err := ParsePayloads(first, inner)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := (&Message{Payloads: m.Payloads}).Encode()
	got, _ := (&Message{Payloads: ps}).Encode()
	if !bytes.Equal(got, want) {
		t.Fatal("reassembled payloads differ")
	}
	// IntAuth (RFC 9242) is the same whether the message came whole or in
	// fragments, and the sender computes the same as the receiver.
	m.Exchange = IKE_INTERMEDIATE
	whole, err := m.EncodeEncrypted(c)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Parse(whole)
	if err := p.Decrypt(c); err != nil {
		t.Fatal(err)
	}
	sent, err := m.IntAuthOctets()
	if err != nil {
		t.Fatal(err)
	}
	recv, err := p.IntAuthOctets()
	if err != nil {
		t.Fatal(err)
	}
	hs[0].Exchange = IKE_INTERMEDIATE
	frag := IntAuthOctetsOfFragments(hs[0], first, inner)
	if !bytes.Equal(sent, recv) || !bytes.Equal(sent, frag) {
		t.Fatal("IntAuth octets differ between sender, whole and fragmented receipt")
	}
}

// TestIntAuthOctetsLayout checks RFC 9242 §3.3.2's adjusted lengths on a
// small message by hand: Length = 28 + 4 + |P|, Payload Length = 4 + |P|,
// Next Payload SK, then P in plaintext.
func TestIntAuthOctetsLayout(t *testing.T) {
	m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: IKE_INTERMEDIATE, Initiator: true, MessageID: 1},
		Payloads: []Payload{&KE{Group: DHMLKEM768, Data: []byte{1, 2, 3}}}}
	a, err := m.IntAuthOctets()
	if err != nil {
		t.Fatal(err)
	}
	p := []byte{0, 0, 0, 11, 0, 36, 0, 0, 1, 2, 3} // KE payload: no next, length 11, group 36
	if len(a) != HeaderLen+4+len(p) {
		t.Fatalf("%d octets", len(a))
	}
	if a[16] != byte(PayloadSK) || a[18] != byte(IKE_INTERMEDIATE) || binary.BigEndian.Uint32(a[24:]) != uint32(len(a)) {
		t.Fatalf("header %x", a[:28])
	}
	if a[28] != byte(PayloadKE) || binary.BigEndian.Uint16(a[30:]) != uint16(4+len(p)) || !bytes.Equal(a[32:], p) {
		t.Fatalf("SK header and P: %x", a[28:])
	}
	// Not available for a parsed message that was not decrypted.
	b, _ := m.EncodeEncrypted(testCipher{key: 1, ivLen: 8, bs: 1, icv: 16})
	q, _ := Parse(b)
	if _, err := q.IntAuthOctets(); !errors.Is(err, ErrNoIntAuthData) {
		t.Fatalf("undecrypted: %v", err)
	}
}

func TestReassemblerLimits(t *testing.T) {
	c := testCipher{key: 0x21, ivLen: 8, bs: 1, icv: 16}
	hs, fs, pts := openFragments(t, bigAuth(), c, 200)
	n := len(fs)
	now := time.Unix(5000, 0)
	is := func(err, want error) bool {
		var fe *FragmentError
		return errors.Is(err, want) && errors.As(err, &fe)
	}

	r := NewReassembler(ReassemblyLimits{MaxFragments: n - 1})
	if _, _, _, err := r.Add(hs[0], fs[0], pts[0], now); !is(err, ErrFragmentLimit) {
		t.Errorf("too many fragments: %v", err)
	}
	r = NewReassembler(ReassemblyLimits{MaxSize: 500})
	var err error
	for i := range n {
		if _, _, _, err = r.Add(hs[i], fs[i], pts[i], now); err != nil {
			break
		}
	}
	if !is(err, ErrFragmentLimit) {
		t.Errorf("too large: %v", err)
	}
	if _, active := r.Active(); active {
		t.Error("oversized message kept")
	}

	// Another message ID while one is collected.
	r = NewReassembler(ReassemblyLimits{})
	r.Add(hs[0], fs[0], pts[0], now)
	other := hs[1]
	other.MessageID++
	if _, _, _, err := r.Add(other, fs[1], pts[1], now); !is(err, ErrFragmentOtherMessage) {
		t.Errorf("other message: %v", err)
	}
	resp := hs[1]
	resp.Response = true
	if _, _, _, err := r.Add(resp, fs[1], pts[1], now); !is(err, ErrFragmentOtherMessage) {
		t.Errorf("other direction: %v", err)
	}
	// A stale fragmentation (fewer fragments) is dropped; a finer one
	// restarts the collection.
	fewer := *fs[1]
	fewer.Total--
	if _, _, _, err := r.Add(hs[1], &fewer, pts[1], now); !is(err, ErrFragmentStale) {
		t.Errorf("stale: %v", err)
	}
	more := *fs[1]
	more.Total++
	if _, _, _, err := r.Add(hs[1], &more, pts[1], now); err != nil {
		t.Errorf("re-fragmented: %v", err)
	}
	if h, _ := r.Active(); h.MessageID != hs[1].MessageID || r.received != 1 || r.total != more.Total {
		t.Errorf("after re-fragmentation: %d of %d", r.received, r.total)
	}

	// Expiry: an old incomplete message is dropped when the next fragment
	// comes, and the new one is collected instead.
	r = NewReassembler(ReassemblyLimits{Timeout: time.Second})
	r.Add(hs[0], fs[0], pts[0], now)
	if r.Expired(now.Add(time.Second)) || !r.Expired(now.Add(2*time.Second)) {
		t.Error("Expired")
	}
	if _, _, _, err := r.Add(other, fs[0], pts[0], now.Add(2*time.Second)); err != nil {
		t.Errorf("after expiry: %v", err)
	}
	if h, _ := r.Active(); h.MessageID != other.MessageID {
		t.Error("expired message not replaced")
	}

	// Next Payload rules of RFC 7383 §2.5.
	r = NewReassembler(ReassemblyLimits{})
	bad := *fs[1]
	bad.NextPayload = PayloadNotify
	if _, _, _, err := r.Add(hs[1], &bad, pts[1], now); !is(err, ErrFragmentInvalid) {
		t.Errorf("Next Payload in fragment 2: %v", err)
	}
	bad = *fs[0]
	bad.NextPayload = PayloadNone
	if _, _, _, err := r.Add(hs[0], &bad, pts[0], now); !is(err, ErrFragmentInvalid) {
		t.Errorf("no Next Payload in fragment 1: %v", err)
	}
	bad = *fs[0]
	bad.Number = bad.Total + 1
	if _, _, _, err := r.Add(hs[0], &bad, pts[0], now); !is(err, ErrFragmentInvalid) {
		t.Errorf("number > total: %v", err)
	}
	if l := NewReassembler(ReassemblyLimits{MaxSize: 1 << 20, MaxFragments: 1 << 20}).Limits(); l.MaxSize != DefaultMaxReassembledSize || l.MaxFragments != 0xffff {
		t.Errorf("limits above the caps: %+v", l)
	}
	if d := NewReassembler(ReassemblyLimits{}).Limits(); d.MaxFragments != DefaultMaxFragments || d.MaxSize != DefaultMaxReassembledSize || d.Timeout != DefaultReassemblyTimeout {
		t.Errorf("defaults %+v", d)
	}
}

func TestFragmentMessageLen(t *testing.T) {
	for _, c := range []struct {
		size       int
		v6, marker bool
		want       int
	}{
		{1280, false, false, 1252}, {1280, false, true, 1248}, {1280, true, true, 1228}, {1280, true, false, 1232}, {30, true, true, 0},
	} {
		if got := FragmentMessageLen(c.size, c.v6, c.marker); got != c.want {
			t.Errorf("%+v: %d", c, got)
		}
	}
	// Every fragment EncodeFragments makes for that length fits.
	frags, err := bigAuth().EncodeFragments(testCipher{key: 3, ivLen: 16, bs: 16, icv: 16}, FragmentMessageLen(576, false, true))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frags {
		if len(f)+4+8+20 > 576 {
			t.Fatalf("fragment of %d octets does not fit 576", len(f))
		}
	}
}

func TestIntAuthOctetsTooLarge(t *testing.T) {
	m := &Message{Header: Header{Exchange: IKE_INTERMEDIATE}, Payloads: []Payload{
		&Cert{Encoding: CertX509, Data: make([]byte, 40000)}, &Cert{Encoding: CertX509, Data: make([]byte, 30000)}}}
	var ee *EncodeError
	if _, err := m.IntAuthOctets(); !errors.As(err, &ee) {
		t.Fatalf("%v", err)
	}
}

// TestReassembledMessage: the message Reassembled builds from a complete
// set of fragments holds the sender's payloads, counts as opened
// (Decrypt is a no-op, Protected is set) and gives the same IntAuth
// octets as the message sent whole.
func TestReassembledMessage(t *testing.T) {
	c := testCipher{key: 0x33, ivLen: 8, bs: 1, icv: 16}
	m := bigAuth()
	m.Exchange = IKE_INTERMEDIATE
	hs, fs, pts := openFragments(t, m, c, 400)
	r := NewReassembler(ReassemblyLimits{})
	var first PayloadType
	var inner []byte
	for i := range fs {
		var done bool
		var err error
		first, inner, done, err = r.Add(hs[i], fs[i], pts[i], time.Unix(1, 0))
		if err != nil || done != (i == len(fs)-1) {
			t.Fatalf("fragment %d: done=%v err=%v", i+1, done, err)
		}
	}
	got, err := Reassembled(hs[0], first, inner)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Protected || got.Raw() != nil || got.MessageID != m.MessageID || got.Exchange != IKE_INTERMEDIATE {
		t.Fatalf("reassembled header/flags: %+v", got.Header)
	}
	if err := got.Decrypt(testCipher{key: 0x99, ivLen: 8, bs: 1, icv: 16}); err != nil {
		t.Fatalf("Decrypt on a reassembled message: %v", err)
	}
	if len(got.Payloads) != len(m.Payloads) || got.Find(PayloadCERTREQ) == nil {
		t.Fatalf("payloads: %s", got)
	}
	want, _ := m.IntAuthOctets()
	have, err := got.IntAuthOctets()
	if err != nil || !bytes.Equal(want, have) {
		t.Fatalf("IntAuth octets differ (%v)", err)
	}
	if _, err := Reassembled(hs[0], first, inner[:len(inner)-3]); err == nil {
		t.Fatal("truncated payloads accepted")
	}
}
