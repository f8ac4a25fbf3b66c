package message

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nonce(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

// handRequest is an IKE_SA_INIT request with every payload type of that
// exchange and a few more.
func handRequest() *Message {
	return &Message{
		Header: Header{SPIi: 0x1122334455667788, Exchange: IKE_SA_INIT, Initiator: true},
		Payloads: []Payload{
			&Notify{NotifyType: COOKIE, Data: []byte("cookie-data")},
			&SA{Proposals: []Proposal{
				{Num: 1, Protocol: ProtocolIKE, Transforms: []Transform{
					EncrTransform(EncrAESGCM16, 256), EncrTransform(EncrAESGCM16, 128),
					PRFTransform(PRFHMACSHA2256), KETransform(DHCurve25519), KETransform(DHECP256),
				}},
				{Num: 2, Protocol: ProtocolIKE, Transforms: []Transform{
					EncrTransform(EncrAESCBC, 256), IntegTransform(IntegHMACSHA2256128),
					PRFTransform(PRFHMACSHA2384), KETransform(DHModp2048),
					{Type: TransformENCR, ID: 99, Attributes: []Attribute{{Type: 17, TV: true, Value: []byte{1, 2}}, {Type: 18, Value: []byte("tlv")}}},
				}},
			}},
			&KE{Group: DHCurve25519, Data: nonce(32)},
			&Nonce{Data: nonce(32)},
			&Notify{NotifyType: NAT_DETECTION_SOURCE_IP, Data: nonce(20)},
			&Notify{NotifyType: NAT_DETECTION_DESTINATION_IP, Data: nonce(20)},
			&Notify{NotifyType: IKEV2_FRAGMENTATION_SUPPORTED},
			&Notify{NotifyType: SIGNATURE_HASH_ALGORITHMS, Data: []byte{0, 2, 0, 3, 0, 4}},
			&VendorID{Data: []byte("keyplane")},
			NewCertReq([20]byte{1, 2, 3}),
			&Unknown{PayloadType: 200, Body: []byte("skip me")},
		},
	}
}

// handAuth is an IKE_AUTH request's inner payloads.
func handAuth() *Message {
	return &Message{
		Header: Header{SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00, Exchange: IKE_AUTH, Initiator: true, MessageID: 1},
		Payloads: []Payload{
			&ID{IDType: IDFQDN, Data: []byte("a.example.org")},
			&Notify{NotifyType: INITIAL_CONTACT},
			IDFromAddr(netip.MustParseAddr("2001:db8::1"), true),
			&Auth{Method: AuthSharedKeyMIC, Data: nonce(32)},
			&SA{Proposals: []Proposal{{Num: 1, Protocol: ProtocolESP, SPI: []byte{0xc1, 0, 0, 1}, Transforms: []Transform{
				EncrTransform(EncrAESGCM16, 128), ESNTransform(ESNNo),
			}}}},
			&TS{Selectors: []TrafficSelector{
				SelectorFromPrefix(netip.MustParsePrefix("10.1.0.0/16"), 0),
				{Type: TSIPv4AddrRange, IPProto: 6, StartPort: 443, EndPort: 443, Start: netip.MustParseAddr("10.1.2.3"), End: netip.MustParseAddr("10.1.2.3")},
			}},
			&TS{Responder: true, Selectors: []TrafficSelector{
				SelectorFromPrefix(netip.MustParsePrefix("2001:db8:1::/48"), 17),
				{Type: TSSecLabel, Raw: []byte{10, 0, 0, 8, 's', 'y', 's', 0}},
			}},
			&Notify{NotifyType: USE_TRANSPORT_MODE},
			&Notify{Protocol: ProtocolESP, SPI: []byte{1, 2, 3, 4}, NotifyType: REKEY_SA},
			&Delete{Protocol: ProtocolESP, SPIs: []uint32{0x11223344, 0x55667788}},
			&Delete{Protocol: ProtocolIKE},
		},
	}
}

func handMessages(tb testing.TB) [][]byte {
	var out [][]byte
	for _, m := range []*Message{handRequest(), handAuth()} {
		b, err := m.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestGoldenBytes(t *testing.T) {
	cases := []struct {
		name string
		m    *Message
		want string
	}{
		{"header+N(COOKIE)+KE", &Message{
			Header:   Header{SPIi: 0x0102030405060708, Exchange: IKE_SA_INIT, Initiator: true},
			Payloads: []Payload{&Notify{NotifyType: COOKIE, Data: []byte("abcd")}, &KE{Group: DHCurve25519, Data: []byte{1, 2}}},
		}, `0102030405060708 0000000000000000 29 20 22 08 00000000 00000032
			22 00 000c 00 00 4006 61626364
			00 00 000a 001f 0000 0102`},
		{"SA AES-CBC-256", &Message{
			Header:   Header{SPIi: 1, SPIr: 2, Exchange: IKE_SA_INIT, Response: true, MessageID: 0},
			Payloads: []Payload{&SA{Proposals: []Proposal{{Num: 1, Protocol: ProtocolIKE, Transforms: []Transform{EncrTransform(EncrAESCBC, 256)}}}}},
		}, `0000000000000001 0000000000000002 21 20 22 20 00000000 00000034
			00 00 0018
			00 00 0014 01 01 00 01
			00 00 000c 01 00 000c 800e 0100`},
		{"TSi, ID, Delete, critical unknown", &Message{
			Header: Header{Exchange: INFORMATIONAL, MessageID: 7},
			Payloads: []Payload{
				&TS{Selectors: []TrafficSelector{{Type: TSIPv4AddrRange, IPProto: 6, EndPort: 0xffff,
					Start: netip.MustParseAddr("192.0.2.0"), End: netip.MustParseAddr("192.0.2.255")}}},
				&ID{Responder: true, IDType: IDFQDN, Data: []byte("a.b")},
				&Delete{Protocol: ProtocolESP, SPIs: []uint32{0x11223344, 0x55667788}},
				&Unknown{PayloadType: 250, Critical: true, Body: []byte{0xee}},
			},
		}, `0000000000000000 0000000000000000 2c 20 25 00 00000007 00000054
			24 00 0018 01 000000 07 06 0010 0000 ffff c0000200 c00002ff
			2a 00 000b 02 000000 612e62
			fa 00 0010 03 04 0002 11223344 55667788
			00 80 0005 ee`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.want)
			got, err := c.m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encode:\n got %x\nwant %x", got, want)
			}
			if c.name == "TSi, ID, Delete, critical unknown" {
				// The critical unknown payload fails the parse.
				_, err := Parse(want)
				var pe *ParseError
				if !errors.As(err, &pe) || !errors.Is(err, ErrUnsupportedCritical) || pe.Payload != 250 {
					t.Fatalf("parse: %v", err)
				}
				if n, data := pe.Notify(); n != UNSUPPORTED_CRITICAL_PAYLOAD || !bytes.Equal(data, []byte{250}) {
					t.Fatalf("notify %v %x", n, data)
				}
				return
			}
			m, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := m.Encode()
			if !bytes.Equal(again, want) {
				t.Fatalf("round trip:\n got %x\nwant %x", again, want)
			}
		})
	}
}

func TestRoundTripHand(t *testing.T) {
	for _, m := range []*Message{handRequest(), handAuth()} {
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(b)
		if err != nil {
			t.Fatalf("%v: %v", m.Exchange, err)
		}
		if len(p.Payloads) != len(m.Payloads) {
			t.Fatalf("%d payloads, want %d", len(p.Payloads), len(m.Payloads))
		}
		for i, want := range m.Payloads {
			got := p.Payloads[i]
			if got.Type() != want.Type() || fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
				t.Errorf("payload %d: %T %v, want %T %v", i, got, got.Type(), want, want.Type())
			}
			gb, _ := got.appendBody(nil)
			wb, _ := want.appendBody(nil)
			if !bytes.Equal(gb, wb) {
				t.Errorf("payload %d (%v) body differs", i, want.Type())
			}
		}
		checkStable(t, p)
	}
	// Field-level checks of the decoded values.
	b, _ := handAuth().Encode()
	p, _ := Parse(b)
	idr := p.Find(PayloadIDr).(*ID)
	if a, ok := idr.Addr(); !ok || a != netip.MustParseAddr("2001:db8::1") || idr.String() != "2001:db8::1" {
		t.Errorf("IDr %v", idr)
	}
	tsi := p.Find(PayloadTSi).(*TS)
	if s := tsi.Selectors[0]; s.Start != netip.MustParseAddr("10.1.0.0") || s.End != netip.MustParseAddr("10.1.255.255") || s.EndPort != 0xffff {
		t.Errorf("TSi[0] %v", s)
	}
	tsr := p.Find(PayloadTSr).(*TS)
	if s := tsr.Selectors[0]; s.End != netip.MustParseAddr("2001:db8:1:ffff:ffff:ffff:ffff:ffff") || s.IPProto != 17 {
		t.Errorf("TSr[0] %v", s)
	}
	if s := tsr.Selectors[1]; s.Type != TSSecLabel || string(s.Raw[4:7]) != "sys" {
		t.Errorf("TSr[1] %v", s)
	}
	ds := p.FindAll(PayloadDelete)
	if len(ds) != 2 || ds[0].(*Delete).SPIs[1] != 0x55667788 || ds[1].(*Delete).Protocol != ProtocolIKE {
		t.Errorf("deletes %v", ds)
	}
	if n := p.Notify(REKEY_SA); n == nil || n.Protocol != ProtocolESP || !bytes.Equal(n.SPI, []byte{1, 2, 3, 4}) {
		t.Errorf("REKEY_SA %v", n)
	}
	b, _ = handRequest().Encode()
	p, _ = Parse(b)
	sa := p.Find(PayloadSA).(*SA)
	if got := sa.Proposals[0].String(); got != "#1 IKE: ENCR_AES_GCM_16/256, ENCR_AES_GCM_16/128, PRF_HMAC_SHA2_256, CURVE_25519, ECP_256" {
		t.Errorf("proposal 1: %s", got)
	}
	odd := sa.Proposals[1].Transforms[4]
	if len(odd.Attributes) != 2 || !odd.Attributes[0].TV || string(odd.Attributes[1].Value) != "tlv" || !odd.Equal(handRequest().Payloads[1].(*SA).Proposals[1].Transforms[4]) {
		t.Errorf("attributes %+v", odd)
	}
	if u := p.Find(200); u == nil || string(u.(*Unknown).Body) != "skip me" {
		t.Errorf("unknown non-critical payload not kept: %v", u)
	}
	if got := p.String(); !strings.Contains(got, "[ N(COOKIE) SA KE Nonce N(NAT_DETECTION_SOURCE_IP)") {
		t.Errorf("String: %s", got)
	}
}

func TestStrongSwanGolden(t *testing.T) {
	msgs := goldenMessages(t)
	var sawInvalidKE, sawCookie, sawSK int
	for name, b := range msgs {
		m, err := Parse(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		// strongSwan sends reserved fields as zero: our encoding of what we
		// parsed must be byte-identical, for clear and SK messages alike.
		again, err := m.Encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Errorf("%s: re-encoding differs (%v)\n got %x\nwant %x", name, err, again, b)
		}
		if m.MajorVersion != 2 || m.MinorVersion != 0 {
			t.Errorf("%s: version %d.%d", name, m.MajorVersion, m.MinorVersion)
		}
		if _, ok := m.Payloads[len(m.Payloads)-1].(*Encrypted); ok {
			sawSK++
			if m.Exchange == IKE_SA_INIT {
				t.Errorf("%s: SK in IKE_SA_INIT", name)
			}
			continue
		}
		if m.Exchange != IKE_SA_INIT {
			t.Errorf("%s: unencrypted %v", name, m.Exchange)
		}
		if !m.Response {
			sa := m.Find(PayloadSA).(*SA)
			if len(sa.Proposals) == 0 || sa.Proposals[0].Num != 1 || sa.Proposals[0].Protocol != ProtocolIKE || len(sa.Proposals[0].SPI) != 0 {
				t.Errorf("%s: SA %v", name, sa)
			}
			ke := m.Find(PayloadKE).(*KE)
			if n := m.Find(PayloadNonce).(*Nonce); len(n.Data) != 32 || len(ke.Data) == 0 {
				t.Errorf("%s: nonce %d, KE %d", name, len(n.Data), len(ke.Data))
			}
			if m.SPIr != 0 || !m.Initiator {
				t.Errorf("%s: request header %v", name, m.Header)
			}
		}
		if n := m.Notify(INVALID_KE_PAYLOAD); n != nil {
			sawInvalidKE++
			if len(m.Payloads) != 1 || !bytes.Equal(n.Data, []byte{0, 31}) || !m.Response || m.SPIr != 0 {
				t.Errorf("%s: INVALID_KE_PAYLOAD answer %v data %x", name, m, n.Data)
			}
		}
		if n := m.Notify(COOKIE); n != nil && m.Response {
			sawCookie++
			if len(m.Payloads) != 1 || len(n.Data) == 0 {
				t.Errorf("%s: COOKIE answer %v", name, m)
			}
		}
	}
	if sawInvalidKE < 2 || sawCookie < 5 || sawSK < 20 {
		t.Errorf("golden set incomplete: %d INVALID_KE_PAYLOAD, %d COOKIE, %d SK", sawInvalidKE, sawCookie, sawSK)
	}
}

// TestStrongSwanCookieRetry checks the COOKIE round: the retried request
// starts with the responder's cookie and otherwise repeats the request.
func TestStrongSwanCookieRetry(t *testing.T) {
	msgs := goldenMessages(t)
	b0, b1, b2 := msgs["cookie-gcm256-ecp256.txt#0"], msgs["cookie-gcm256-ecp256.txt#1"], msgs["cookie-gcm256-ecp256.txt#2"]
	m0, err0 := Parse(b0)
	m1, err1 := Parse(b1)
	m2, err2 := Parse(b2)
	if err := errors.Join(err0, err1, err2); err != nil {
		t.Fatal(err)
	}
	c := m1.Notify(COOKIE)
	if c == nil {
		t.Fatalf("no COOKIE in %v", m1)
	}
	first, ok := m2.Payloads[0].(*Notify)
	if !ok || first.NotifyType != COOKIE || !bytes.Equal(first.Data, c.Data) {
		t.Fatalf("retry does not start with the cookie: %v", m2)
	}
	retry := &Message{Header: m2.Header, Payloads: m2.Payloads[1:]}
	rb, _ := retry.Encode()
	ob, _ := m0.Encode()
	if !bytes.Equal(rb, ob) {
		t.Errorf("retry differs from the first request beyond the cookie")
	}
}

func TestParseErrors(t *testing.T) {
	good, _ := (&Message{Header: Header{SPIi: 1, Exchange: IKE_SA_INIT, Initiator: true},
		Payloads: []Payload{&Nonce{Data: nonce(16)}}}).Encode()
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	hdr := func(next PayloadType, body ...byte) []byte {
		h := Header{Exchange: INFORMATIONAL}
		b := h.appendHeader(nil, next, uint32(HeaderLen+len(body)))
		return append(b, body...)
	}
	cases := []struct {
		name   string
		b      []byte
		want   error
		notify NotifyType
	}{
		{"empty", nil, ErrTruncated, INVALID_SYNTAX},
		{"short header", good[:20], ErrTruncated, INVALID_SYNTAX},
		{"version 3", mod(func(b []byte) []byte { b[17] = 0x30; return b }), ErrInvalidMajorVersion, INVALID_MAJOR_VERSION},
		{"IKEv1", mod(func(b []byte) []byte { b[17] = 0x10; return b }), ErrObsoleteVersion, 0},
		{"length too big", mod(func(b []byte) []byte { b[27]++; return b }), ErrTruncated, INVALID_SYNTAX},
		{"trailing data", append(append([]byte(nil), good...), 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"length < 28", mod(func(b []byte) []byte { b[24], b[25], b[26], b[27] = 0, 0, 0, 10; return b }), ErrInvalidSyntax, INVALID_SYNTAX},
		{"payload length < 4", hdr(PayloadNonce, 0, 0, 0, 3), ErrInvalidSyntax, INVALID_SYNTAX},
		{"payload past end", hdr(PayloadVendorID, 0, 0, 0, 9, 1), ErrTruncated, INVALID_SYNTAX},
		{"missing payload", hdr(PayloadVendorID), ErrTruncated, INVALID_SYNTAX},
		{"bytes after chain", hdr(PayloadVendorID, 0, 0, 0, 4, 9), ErrInvalidSyntax, INVALID_SYNTAX},
		{"nonce too short", hdr(PayloadNonce, 0, 0, 0, 5, 1), ErrInvalidSyntax, INVALID_SYNTAX},
		{"critical unknown", hdr(77, 0, 0x80, 0, 4), ErrUnsupportedCritical, UNSUPPORTED_CRITICAL_PAYLOAD},
		{"SK not last", hdr(PayloadSK, 43, 0, 0, 4, 0, 0, 0, 4), ErrInvalidSyntax, INVALID_SYNTAX},
		{"KE short", hdr(PayloadKE, 0, 0, 0, 6, 0, 31), ErrTruncated, INVALID_SYNTAX},
		{"IPv4 ID of 3 bytes", hdr(PayloadIDi, 0, 0, 0, 11, 1, 0, 0, 0, 1, 2, 3), ErrInvalidSyntax, INVALID_SYNTAX},
		{"AUTH without data", hdr(PayloadAUTH, 0, 0, 0, 8, 2, 0, 0, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"notify SPI past end", hdr(PayloadNotify, 0, 0, 0, 10, 3, 4, 0x40, 0, 1, 2), ErrTruncated, INVALID_SYNTAX},
		{"delete count mismatch", hdr(PayloadDelete, 0, 0, 0, 12, 3, 4, 0, 2, 1, 2, 3, 4), ErrTruncated, INVALID_SYNTAX},
		{"delete extra bytes", hdr(PayloadDelete, 0, 0, 0, 13, 3, 4, 0, 1, 1, 2, 3, 4, 5), ErrInvalidSyntax, INVALID_SYNTAX},
		{"delete ESP SPI size 8", hdr(PayloadDelete, 0, 0, 0, 8, 3, 8, 0, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"delete IKE with SPIs", hdr(PayloadDelete, 0, 0, 0, 8, 1, 0, 0, 1), ErrInvalidSyntax, INVALID_SYNTAX},
		{"delete protocol 9", hdr(PayloadDelete, 0, 0, 0, 8, 9, 0, 0, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"TS count zero", hdr(PayloadTSi, 0, 0, 0, 8, 0, 0, 0, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"TS count too high", hdr(PayloadTSi, 0, 0, 0, 8, 1, 0, 0, 0), ErrTruncated, INVALID_SYNTAX},
		{"TS IPv4 wrong length", hdr(PayloadTSi, 0, 0, 0, 20, 1, 0, 0, 0, 7, 0, 0, 12, 0, 0, 0, 0, 1, 1, 1, 1), ErrInvalidSyntax, INVALID_SYNTAX},
		{"SA empty", hdr(PayloadSA, 0, 0, 0, 4), ErrInvalidSyntax, INVALID_SYNTAX},
		{"proposal bad last", hdr(PayloadSA, 0, 0, 0, 12, 1, 0, 0, 8, 1, 1, 0, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"proposal no transforms", hdr(PayloadSA, 0, 0, 0, 12, 0, 0, 0, 8, 1, 1, 0, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"proposal says more", hdr(PayloadSA, 0, 0, 0, 20, 2, 0, 0, 16, 1, 1, 0, 1, 0, 0, 0, 8, 1, 0, 0, 12), ErrInvalidSyntax, INVALID_SYNTAX},
		{"ESP proposal SPI size 0", hdr(PayloadSA, 0, 0, 0, 20, 0, 0, 0, 16, 1, 3, 0, 1, 0, 0, 0, 8, 1, 0, 0, 12), ErrInvalidSyntax, INVALID_SYNTAX},
		{"transform count too high", hdr(PayloadSA, 0, 0, 0, 20, 0, 0, 0, 16, 1, 1, 0, 2, 0, 0, 0, 8, 1, 0, 0, 12), ErrInvalidSyntax, INVALID_SYNTAX},
		{"transform past proposal", hdr(PayloadSA, 0, 0, 0, 20, 0, 0, 0, 16, 1, 1, 0, 1, 0, 0, 0, 9, 1, 0, 0, 12), ErrTruncated, INVALID_SYNTAX},
		{"bytes after transforms", hdr(PayloadSA, 0, 0, 0, 21, 0, 0, 0, 17, 1, 1, 0, 1, 0, 0, 0, 8, 1, 0, 0, 12, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"key length TLV", hdr(PayloadSA, 0, 0, 0, 24, 0, 0, 0, 20, 1, 1, 0, 1, 0, 0, 0, 12, 1, 0, 0, 12, 0, 14, 0, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"key length twice", hdr(PayloadSA, 0, 0, 0, 28, 0, 0, 0, 24, 1, 1, 0, 1, 0, 0, 0, 16, 1, 0, 0, 12, 0x80, 14, 0, 128, 0x80, 14, 1, 0), ErrInvalidSyntax, INVALID_SYNTAX},
		{"attribute past transform", hdr(PayloadSA, 0, 0, 0, 24, 0, 0, 0, 20, 1, 1, 0, 1, 0, 0, 0, 12, 1, 0, 0, 12, 0, 9, 0, 1), ErrTruncated, INVALID_SYNTAX},
		{"SKF fragment 0", hdr(PayloadSKF, 0, 0, 0, 8, 0, 0, 0, 1), ErrInvalidSyntax, INVALID_SYNTAX},
		{"SKF number > total", hdr(PayloadSKF, 0, 0, 0, 8, 0, 3, 0, 2), ErrInvalidSyntax, INVALID_SYNTAX},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("%T is not a *ParseError", err)
			}
			if n, _ := pe.Notify(); n != c.notify {
				t.Errorf("Notify() = %v, want %v", n, c.notify)
			}
			if !strings.Contains(pe.Error(), pe.Reason) || pe.Reason == "" {
				t.Errorf("error text %q", pe.Error())
			}
		})
	}
	// A higher major version still yields the header for the answer.
	b := mod(func(b []byte) []byte { b[17] = 0x30; return b })
	m, err := Parse(b)
	if m == nil || m.SPIi != 1 || !errors.Is(err, ErrInvalidMajorVersion) {
		t.Errorf("version error: %v %v", m, err)
	}
}

func TestSK(t *testing.T) {
	ciphers := []testCipher{
		{key: 0x5a, ivLen: 8, bs: 1, icv: 16},
		{key: 0xa5, ivLen: 16, bs: 16, icv: 16},
		{key: 0x11, ivLen: 16, bs: 16, icv: 32},
	}
	for _, c := range ciphers {
		t.Run(fmt.Sprintf("iv%d-bs%d-icv%d", c.ivLen, c.bs, c.icv), func(t *testing.T) {
			m := handAuth()
			b, err := m.EncodeEncrypted(c)
			if err != nil {
				t.Fatal(err)
			}
			inner, _ := (&Message{Payloads: m.Payloads}).Encode()
			ptLen := len(inner) - HeaderLen
			wantPad := (c.bs - (ptLen+1)%c.bs) % c.bs
			if want := HeaderLen + 4 + c.ivLen + ptLen + wantPad + 1 + c.icv; len(b) != want {
				t.Fatalf("length %d, want %d", len(b), want)
			}
			if PayloadType(b[16]) != PayloadSK || PayloadType(b[HeaderLen]) != PayloadIDi {
				t.Fatalf("next payloads %v / %v", PayloadType(b[16]), PayloadType(b[HeaderLen]))
			}
			p, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if sk, ok := p.Payloads[0].(*Encrypted); !ok || sk.NextPayload != PayloadIDi || p.Protected {
				t.Fatalf("parsed %v", p)
			}
			if err := p.Decrypt(c); err != nil {
				t.Fatal(err)
			}
			if !p.Protected || len(p.Payloads) != len(m.Payloads) {
				t.Fatalf("decrypted %v", p)
			}
			if err := p.Decrypt(c); !errors.Is(err, ErrNotEncrypted) {
				t.Errorf("second Decrypt: %v", err)
			}
			// Tampering anywhere (header, SK header, IV, ciphertext, ICV)
			// fails the integrity check and leaves the message as it was.
			for _, i := range []int{3, 17, 20, 26, HeaderLen + 1, HeaderLen + 5, len(b) / 2, len(b) - 1} {
				bad := append([]byte(nil), b...)
				bad[i] ^= 0x01
				q, err := Parse(bad)
				if err != nil {
					continue // the header or SK length no longer holds
				}
				err = q.Decrypt(c)
				if !errors.Is(err, ErrIntegrity) {
					t.Errorf("tampered byte %d: %v", i, err)
				}
				if q.Protected || len(q.Payloads) != 1 {
					t.Errorf("tampered byte %d: message changed", i)
				}
			}
		})
	}
	// Bad padding and an empty plaintext are syntax errors after a
	// successful integrity check.
	c := testCipher{key: 1, ivLen: 4, bs: 1, icv: 4}
	for _, pt := range [][]byte{{5}, {}, {0, 0, 7}} {
		h := Header{Exchange: INFORMATIONAL}
		skLen := 4 + c.ivLen + len(pt) + c.icv
		head := h.appendHeader(nil, PayloadSK, uint32(HeaderLen+skLen))
		head = append(head, 0, 0, byte(skLen>>8), byte(skLen))
		b, _ := c.Seal(append([]byte(nil), head...), head, pt)
		m, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Decrypt(c)
		want := ErrInvalidSyntax
		if len(pt) == 0 {
			want = ErrIntegrity
		}
		if !errors.Is(err, want) {
			t.Errorf("plaintext %x: %v, want %v", pt, err, want)
		}
	}
	// An empty INFORMATIONAL (liveness check) round-trips.
	e := &Message{Header: Header{Exchange: INFORMATIONAL, MessageID: 5}}
	b, err := e.EncodeEncrypted(c)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Parse(b)
	if err := p.Decrypt(c); err != nil || len(p.Payloads) != 0 || !p.Protected {
		t.Fatalf("empty INFORMATIONAL: %v %v", err, p)
	}
	// SK inside SK is refused.
	if _, err := ParsePayloads(PayloadSK, []byte{0, 0, 0, 4}); !errors.Is(err, ErrInvalidSyntax) {
		t.Errorf("SK in SK: %v", err)
	}
}

func TestFragment(t *testing.T) {
	c := testCipher{key: 9, ivLen: 8, bs: 1, icv: 16}
	inner, _ := (&Message{Payloads: handAuth().Payloads}).Encode()
	pt := append(append([]byte(nil), inner[HeaderLen:]...), 0)
	h := Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Initiator: true, MessageID: 1}
	half := len(pt) / 2
	var got []byte
	for i, part := range [][]byte{pt[:half], pt[half:]} {
		body := append([]byte(nil), part...)
		if i == 0 {
			body = append(body, 0) // pad length for this fragment
		}
		// The second part already ends with pt's pad length 0.
		skfLen := 8 + c.ivLen + len(body) + c.icv
		head := h.appendHeader(nil, PayloadSKF, uint32(HeaderLen+skfLen))
		next := byte(0)
		if i == 0 {
			next = byte(PayloadIDi)
		}
		head = append(head, next, 0, byte(skfLen>>8), byte(skfLen), 0, byte(i+1), 0, 2)
		b, _ := c.Seal(append([]byte(nil), head...), head, body)
		m, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		f, plain, err := m.OpenFragment(c)
		if err != nil {
			t.Fatal(err)
		}
		if f.Number != uint16(i+1) || f.Total != 2 {
			t.Fatalf("fragment %d/%d", f.Number, f.Total)
		}
		got = append(got, plain...)
		if i == 0 && f.NextPayload != PayloadIDi {
			t.Fatalf("first fragment next payload %v", f.NextPayload)
		}
		if err := m.Decrypt(c); !errors.Is(err, ErrNotEncrypted) {
			t.Errorf("Decrypt of SKF: %v", err)
		}
	}
	ps, err := ParsePayloads(PayloadIDi, got)
	if err != nil || len(ps) != len(handAuth().Payloads) {
		t.Fatalf("reassembled: %d payloads, %v", len(ps), err)
	}
}

func TestEncodeFragments(t *testing.T) {
	m := handAuth()
	for _, c := range []testCipher{{key: 3, ivLen: 8, bs: 1, icv: 16}, {key: 4, ivLen: 16, bs: 16, icv: 16}} {
		for _, maxLen := range []int{100, 128, 200, 1280} {
			frags, err := m.EncodeFragments(c, maxLen)
			if err != nil {
				t.Fatal(err)
			}
			var joined []byte
			var first PayloadType
			for i, b := range frags {
				if len(b) > maxLen {
					t.Fatalf("fragment %d: %d > %d", i+1, len(b), maxLen)
				}
				p, err := Parse(b)
				if err != nil {
					t.Fatal(err)
				}
				if p.MessageID != m.MessageID || p.Exchange != IKE_AUTH {
					t.Fatalf("header %v", p.Header)
				}
				f, pt, err := p.OpenFragment(c)
				if err != nil {
					t.Fatal(err)
				}
				if int(f.Number) != i+1 || int(f.Total) != len(frags) {
					t.Fatalf("fragment %d/%d at %d of %d", f.Number, f.Total, i+1, len(frags))
				}
				if i == 0 {
					first = f.NextPayload
				} else if f.NextPayload != PayloadNone {
					t.Fatalf("fragment %d names %v", i+1, f.NextPayload)
				}
				joined = append(joined, pt...)
			}
			ps, err := ParsePayloads(first, joined)
			if err != nil || len(ps) != len(m.Payloads) {
				t.Fatalf("max %d: %d payloads, %v", maxLen, len(ps), err)
			}
			if maxLen == 1280 && len(frags) != 1 || maxLen == 100 && len(frags) < 4 {
				t.Errorf("max %d: %d fragments", maxLen, len(frags))
			}
		}
	}
	if _, err := m.EncodeFragments(testCipher{ivLen: 8, bs: 1, icv: 16}, 60); err == nil {
		t.Error("no room, yet encoded")
	}
}

func TestEncodeErrors(t *testing.T) {
	bad := []Payload{
		&Nonce{Data: nonce(15)},
		&Nonce{Data: nonce(257)},
		&ID{IDType: IDIPv4Addr, Data: []byte{1, 2, 3}},
		&SA{},
		&TS{},
		&TS{Selectors: []TrafficSelector{{Type: TSIPv4AddrRange, Start: netip.MustParseAddr("::1"), End: netip.MustParseAddr("::1")}}},
		&TS{Selectors: []TrafficSelector{{Type: TSSecLabel}}},
		&Delete{Protocol: ProtocolESP},
		&Delete{Protocol: ProtocolIKE, SPIs: []uint32{1}},
		&Encrypted{},
		nil,
	}
	for _, p := range bad {
		m := &Message{Payloads: []Payload{p, &VendorID{}}}
		if _, err := m.Encode(); err == nil {
			t.Errorf("%T %+v: encoded", p, p)
		}
	}
	nested := &Message{Payloads: []Payload{&VendorID{}, &Encrypted{NextPayload: PayloadNone}}}
	if _, err := nested.Encode(); err != nil {
		t.Errorf("passing a received SK payload through: %v", err)
	}
	if _, err := nested.EncodeEncrypted(testCipher{bs: 1}); err == nil {
		t.Error("SK encrypted inside SK")
	}
	big := &Message{Payloads: []Payload{&VendorID{Data: make([]byte, 70000)}}}
	if _, err := big.Encode(); err == nil {
		t.Error("oversized payload encoded")
	}
	if _, err := big.EncodeEncrypted(testCipher{bs: 1}); err == nil {
		t.Error("oversized SK encoded")
	}
}

func TestStrings(t *testing.T) {
	cases := map[fmt.Stringer]string{
		IKE_SA_INIT:                   "IKE_SA_INIT",
		ExchangeType(99):              "ExchangeType(99)",
		PayloadNotify:                 "N",
		PayloadType(200):              "PayloadType(200)",
		INVALID_KE_PAYLOAD:            "INVALID_KE_PAYLOAD",
		NAT_DETECTION_DESTINATION_IP:  "NAT_DETECTION_DESTINATION_IP",
		IKEV2_FRAGMENTATION_SUPPORTED: "IKEV2_FRAGMENTATION_SUPPORTED",
		NotifyType(12345):             "NotifyType(12345)",
		EncrAESGCM16:                  "ENCR_AES_GCM_16",
		PRFHMACSHA2512:                "PRF_HMAC_SHA2_512",
		IntegHMACSHA2256128:           "AUTH_HMAC_SHA2_256_128",
		DHCurve25519:                  "CURVE_25519",
		ESNYes:                        "ESN",
		IDKeyID:                       "ID_KEY_ID",
		AuthSharedKeyMIC:              "SHARED_KEY_MIC",
		TSIPv6AddrRange:               "TS_IPV6_ADDR_RANGE",
		ProtocolESP:                   "ESP",
		TransformKE:                   "KE",
	}
	for v, want := range cases {
		if got := v.String(); got != want {
			t.Errorf("%#v: %q, want %q", v, got, want)
		}
	}
	if !INVALID_SYNTAX.IsError() || COOKIE.IsError() {
		t.Error("IsError")
	}
	if !EncrChaCha20Poly1305.AEAD() || EncrAESCBC.AEAD() {
		t.Error("AEAD")
	}
	if !PayloadCERTREQ.Known() || PayloadType(49).Known() || !PayloadSKF.Known() {
		t.Error("Known")
	}
}
