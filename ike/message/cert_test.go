package message

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestCertPayloads(t *testing.T) {
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x05}
	hashURL := append(bytes.Repeat([]byte{0xab}, 20), "http://ca.example/c.der"...)
	m := &Message{Header: Header{Exchange: IKE_AUTH}, Payloads: []Payload{
		&Cert{Encoding: CertX509, Data: der},
		&Cert{Encoding: CertHashURLX509, Data: hashURL},
		NewCertReq([20]byte{1}, [20]byte{2}),
		&CertReq{Encoding: CertX509}, // "any CA"
	}}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Payloads[0].(*Cert)
	if c.Encoding != CertX509 || !bytes.Equal(c.Data, der) {
		t.Fatalf("CERT %v %x", c.Encoding, c.Data)
	}
	h, url, ok := p.Payloads[1].(*Cert).HashURL()
	if !ok || h[0] != 0xab || url != "http://ca.example/c.der" {
		t.Fatalf("hash and URL: %x %q %v", h, url, ok)
	}
	if _, _, ok := c.HashURL(); ok {
		t.Fatal("HashURL of an X.509 CERT")
	}
	hs := p.Payloads[2].(*CertReq).Hashes()
	if len(hs) != 2 || hs[0] != [20]byte{1} || hs[1] != [20]byte{2} {
		t.Fatalf("CA hashes %x", hs)
	}
	if len(p.Payloads[3].(*CertReq).Hashes()) != 0 {
		t.Fatal("empty CERTREQ has hashes")
	}
	if got := p.String(); !bytes.Contains([]byte(got), []byte("[ CERT CERT CERTREQ CERTREQ ]")) {
		t.Errorf("String %s", got)
	}

	// Decoding errors are *ParseError with the payload named.
	for name, body := range map[PayloadType][][]byte{
		PayloadCERT:    {{}, {byte(CertX509)}, append([]byte{byte(CertHashURLX509)}, make([]byte, 20)...)},
		PayloadCERTREQ: {{}},
	} {
		for _, bd := range body {
			chain := append([]byte{0, 0, 0, byte(4 + len(bd))}, bd...)
			_, err := ParsePayloads(name, chain)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Payload != name || !errors.Is(err, ErrInvalidSyntax) && !errors.Is(err, ErrTruncated) {
				t.Errorf("%v body %x: %v", name, bd, err)
			}
		}
	}
	// Encoding refuses what decoding would.
	for _, bad := range []Payload{&Cert{Encoding: CertX509}} {
		if _, err := (&Message{Payloads: []Payload{bad}}).Encode(); err == nil {
			t.Errorf("%T encoded", bad)
		}
	}
	// A malformed hash list is kept (a CERTREQ is a hint), and reported.
	odd21 := append([]byte{0, 0, 0, 26, byte(CertX509)}, make([]byte, 21)...)
	ps, err := ParsePayloads(PayloadCERTREQ, odd21)
	if err != nil {
		t.Fatalf("21-octet CA list: %v", err)
	}
	if cr := ps[0].(*CertReq); len(cr.Hashes()) != 1 || !errors.Is(cr.CheckHashes(), ErrInvalidSyntax) {
		t.Fatalf("21-octet CA list: %d hashes, %v", len(cr.Hashes()), cr.CheckHashes())
	}
	if err := NewCertReq([20]byte{1}).CheckHashes(); err != nil {
		t.Fatal(err)
	}
	// An unknown encoding is carried as it is.
	odd := &CertReq{Encoding: 201, Authorities: []byte("x")}
	b, _ = (&Message{Payloads: []Payload{odd}}).Encode()
	if p, err := Parse(b); err != nil || p.Payloads[0].(*CertReq).Encoding != 201 || p.Payloads[0].(*CertReq).Hashes() != nil {
		t.Fatalf("unknown encoding: %v", err)
	}
}

// TestSignatureAuth uses RFC 7427 Appendix A's AlgorithmIdentifier for
// sha256WithRSAEncryption (A.1.2).
func TestSignatureAuth(t *testing.T) {
	alg := []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00}
	sig := bytes.Repeat([]byte{0x5c}, 256)
	data, err := SignatureAuth{AlgorithmIdentifier: alg, Signature: sig}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != 15 || !bytes.Equal(data[1:16], alg) || !bytes.Equal(data[16:], sig) {
		t.Fatalf("layout %x", data[:20])
	}
	s, err := ParseSignatureAuth(data)
	if err != nil || !bytes.Equal(s.AlgorithmIdentifier, alg) || !bytes.Equal(s.Signature, sig) {
		t.Fatalf("parse: %v", err)
	}
	// A long-form DER length (RSASSA-PSS parameters can be longer than 127).
	long := append([]byte{0x30, 0x81, 0x80}, make([]byte, 0x80)...)
	if _, err := ParseSignatureAuth(append(append([]byte{byte(len(long))}, long...), 1)); err != nil {
		t.Fatalf("long form: %v", err)
	}
	for name, bad := range map[string][]byte{
		"empty":           {},
		"zero length":     {0, 1, 2},
		"length too long": {20, 0x30, 0x00},
		"no signature":    append([]byte{15}, alg...),
		"not a SEQUENCE":  {2, 0x31, 0x00, 1},
		"trailing in alg": {3, 0x30, 0x00, 0x00, 1},
		"short in alg":    {2, 0x30, 0x05, 1},
		"non-minimal":     {4, 0x30, 0x81, 0x01, 0x00, 1},
		"indefinite":      {2, 0x30, 0x80, 1},
	} {
		_, err := ParseSignatureAuth(bad)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Payload != PayloadAUTH {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, bad := range []SignatureAuth{{Signature: sig}, {AlgorithmIdentifier: alg}, {AlgorithmIdentifier: make([]byte, 256), Signature: sig}} {
		if _, err := bad.Bytes(); err == nil {
			t.Errorf("encoded %d/%d", len(bad.AlgorithmIdentifier), len(bad.Signature))
		}
	}
}

func TestNotifyHelpers(t *testing.T) {
	n := NewSignatureHashAlgorithms(HashSHA2256, HashSHA2384, HashSHA2512, HashIdentity)
	if n.NotifyType != SIGNATURE_HASH_ALGORITHMS || !bytes.Equal(n.Data, []byte{0, 2, 0, 3, 0, 4, 0, 5}) {
		t.Fatalf("%v %x", n.NotifyType, n.Data)
	}
	hs, err := ParseSignatureHashAlgorithms(n.Data)
	if err != nil || len(hs) != 4 || hs[3] != HashIdentity || hs[3].String() != "IDENTITY" {
		t.Fatalf("%v %v", hs, err)
	}
	if _, err := ParseSignatureHashAlgorithms([]byte{0, 2, 0}); !errors.Is(err, ErrInvalidSyntax) {
		t.Fatalf("odd length: %v", err)
	}
	if hs, err := ParseSignatureHashAlgorithms(nil); err != nil || len(hs) != 0 {
		t.Fatalf("empty: %v %v", hs, err)
	}
	if f := NewFragmentationSupported(); f.NotifyType != IKEV2_FRAGMENTATION_SUPPORTED || len(f.Data) != 0 || len(f.SPI) != 0 {
		t.Fatal("IKEV2_FRAGMENTATION_SUPPORTED")
	}
	if f := NewIntermediateSupported(); f.NotifyType != INTERMEDIATE_EXCHANGE_SUPPORTED || len(f.Data) != 0 {
		t.Fatal("INTERMEDIATE_EXCHANGE_SUPPORTED")
	}
}

// TestAddKETransforms: RFC 9370's ADDKE1..7 transform types in an SA
// payload, with ML-KEM and the optional NONE.
func TestAddKETransforms(t *testing.T) {
	p := Proposal{Num: 1, Protocol: ProtocolIKE, Transforms: []Transform{
		EncrTransform(EncrAESGCM16, 256), PRFTransform(PRFHMACSHA2384), KETransform(DHCurve25519),
		AddKETransform(1, DHMLKEM768), AddKETransform(1, DHNone), AddKETransform(7, DHMLKEM1024),
	}}
	b, err := (&Message{Header: Header{Exchange: IKE_SA_INIT}, Payloads: []Payload{&SA{Proposals: []Proposal{p}}}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Payloads[0].(*SA).Proposals[0]
	if add1, add7 := slices.Collect(got.Of(AddKE(1))), slices.Collect(got.Of(AddKE(7))); len(add1) != 2 || len(add7) != 1 || add7[0].ID != TransformID(DHMLKEM1024) {
		t.Fatalf("ADDKE transforms %v", got)
	}
	if s := got.String(); s != "#1 IKE: ENCR_AES_GCM_16/256, PRF_HMAC_SHA2_384, CURVE_25519, ADDKE1:ML_KEM_768, ADDKE1:NONE, ADDKE7:ML_KEM_1024" {
		t.Errorf("String %s", s)
	}
	for n := range 9 {
		tt := AddKE(n)
		if (n >= 1 && n <= 7) != (tt != 0) || (tt != 0 && tt.AddKEIndex() != n) {
			t.Errorf("AddKE(%d) = %v", n, tt)
		}
	}
	if TransformKE.AddKEIndex() != 0 || TransformType(13).AddKEIndex() != 0 {
		t.Error("AddKEIndex of a non-ADDKE type")
	}
}
