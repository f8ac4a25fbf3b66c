package ikecrypto_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// The RFC 9370 and RFC 9242 derivations against known answers that
// testdata/multike-vectors.py computes with Python's hmac (OpenSSL), from
// the formulas written out there.
func TestMultiKEVectors(t *testing.T) {
	v := readVectors(t, "testdata/multike-vectors.txt")
	ni, nr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	const spii, spir = 0x0102030405060708, 0x1112131415161718
	skd0 := make([]byte, 48)
	for i := range skd0 {
		skd0[i] = byte(0xd0 + i)
	}
	sk1, sk2, gir := bytes.Repeat([]byte{0x5a}, 32), bytes.Repeat([]byte{0x99}, 32), bytes.Repeat([]byte{0x77}, 56)
	suite := ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 256, PRF: message.PRFHMACSHA2384,
		DH: message.DHCurve25519, AddKE: [7]message.DHGroup{message.DHMLKEM768}}
	check := func(prefix string, k *ikecrypto.IKEKeys) {
		t.Helper()
		for name, got := range map[string][]byte{"SKd": k.SKd(), "SKei": k.SKei(), "SKer": k.SKer(), "SKpi": k.SKpi(), "SKpr": k.SKpr()} {
			if !bytes.Equal(got, v[prefix+name]) {
				t.Errorf("%s%s differs", prefix, name)
			}
		}
		if len(k.SKai()) != 0 || len(k.SKar()) != 0 {
			t.Errorf("%s: integrity keys with an AEAD", prefix)
		}
	}

	prev, err := ikecrypto.NewIKEKeys(suite, skd0, nil, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ikecrypto.DeriveIntermediateIKEKeys(prev, sk1, ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	check("inter.", k)

	k, err = ikecrypto.DeriveRekeyedIKEKeysMulti(suite, message.PRFHMACSHA2384, skd0, gir, ni, nr, [][]byte{sk1, sk2}, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	check("rekey.", k)
	// Without additional secrets it is RFC 7296's rekey.
	k1, _ := ikecrypto.DeriveRekeyedIKEKeysMulti(suite, message.PRFHMACSHA2384, skd0, gir, ni, nr, nil, spii, spir)
	k2, _ := ikecrypto.DeriveRekeyedIKEKeys(suite, message.PRFHMACSHA2384, skd0, gir, ni, nr, spii, spir)
	if !bytes.Equal(k1.SKd(), k2.SKd()) || !bytes.Equal(k1.SKpr(), k2.SKpr()) {
		t.Error("DeriveRekeyedIKEKeysMulti without additional KEs differs from DeriveRekeyedIKEKeys")
	}

	cs := ikecrypto.ChildSuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128, AddKE: [7]message.DHGroup{message.DHMLKEM1024}}
	ck, err := ikecrypto.DeriveChildKeysMulti(message.PRFHMACSHA2384, skd0, cs, gir, ni, nr, [][]byte{sk1})
	if err != nil {
		t.Fatal(err)
	}
	km := v["child.keymat"]
	if !bytes.Equal(ck.EncrI, km[:20]) || !bytes.Equal(ck.EncrR, km[20:]) {
		t.Error("child KEYMAT differs")
	}

	// RFC 9242 IntAuth over the octets of an IKE_INTERMEDIATE request
	// holding one KE payload, as the message codec produces them.
	m := &message.Message{
		Header:   message.Header{SPIi: spii, SPIr: spir, Exchange: message.IKE_INTERMEDIATE, Initiator: true, MessageID: 1},
		Payloads: []message.Payload{&message.KE{Group: message.DHMLKEM768, Data: bytes.Repeat([]byte{0x42}, 8)}},
	}
	octets, err := m.IntAuthOctets()
	if err != nil || !bytes.Equal(octets, v["intauth.octets"]) {
		t.Fatalf("IntAuth octets %x, %v", octets, err)
	}
	skpi := make([]byte, 48)
	for i := range skpi {
		skpi[i] = byte(i)
	}
	i1, err := ikecrypto.IntAuth(message.PRFHMACSHA2384, skpi, nil, octets)
	if err != nil || !bytes.Equal(i1, v["intauth.i1"]) {
		t.Fatalf("IntAuth_i1: %v", err)
	}
	i2, _ := ikecrypto.IntAuth(message.PRFHMACSHA2384, skpi, i1, octets)
	if !bytes.Equal(i2, v["intauth.i2"]) {
		t.Fatal("IntAuth_i2")
	}
	signed, err := ikecrypto.AppendIntAuth([]byte("RealMessage1|NonceRData|MACedIDForI"), i2, i1, 2)
	if err != nil || !bytes.Equal(signed, v["intauth.signed"]) {
		t.Fatalf("signed octets: %v", err)
	}
	if _, err := ikecrypto.AppendIntAuth(nil, i1, nil, 2); err == nil {
		t.Error("AppendIntAuth with one side missing")
	}
	if _, err := ikecrypto.IntAuth(message.PRFHMACMD5, skpi, nil, octets); !errors.Is(err, ikecrypto.ErrUnsupported) {
		t.Errorf("IntAuth with an unsupported PRF: %v", err)
	}
}

// TestHybridRoundTrip runs an x25519 + ML-KEM-768 IKE SA setup as both
// sides would with these functions: IKE_SA_INIT keys, one IKE_INTERMEDIATE
// with ML-KEM, updated keys; both ends derive the same keys, and the keys
// change with the additional secret.
func TestHybridRoundTrip(t *testing.T) {
	suite := ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 256, PRF: message.PRFHMACSHA2384,
		DH: message.DHCurve25519, AddKE: [7]message.DHGroup{message.DHMLKEM768}}
	if err := suite.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := suite.AdditionalKEs(); len(got) != 1 || got[0] != message.DHMLKEM768 {
		t.Fatalf("AdditionalKEs %v", got)
	}
	ni, nr := bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32)
	i, _ := ikecrypto.NewKeyExchange(message.DHCurve25519)
	rData, rSecret, err := ikecrypto.Respond(message.DHCurve25519, i.PublicValue())
	if err != nil {
		t.Fatal(err)
	}
	iSecret, _ := i.SharedSecret(rData)
	ik, _ := ikecrypto.DeriveIKEKeys(suite, iSecret, ni, nr, 7, 8)
	rk, _ := ikecrypto.DeriveIKEKeys(suite, rSecret, ni, nr, 7, 8)

	kem, _ := ikecrypto.NewKeyExchange(message.DHMLKEM768)
	ct, rSK1, err := ikecrypto.Respond(message.DHMLKEM768, kem.PublicValue())
	if err != nil {
		t.Fatal(err)
	}
	iSK1, _ := kem.SharedSecret(ct)
	ik1, err1 := ikecrypto.DeriveIntermediateIKEKeys(ik, iSK1, ni, nr, 7, 8)
	rk1, err2 := ikecrypto.DeriveIntermediateIKEKeys(rk, rSK1, ni, nr, 7, 8)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if !bytes.Equal(ik1.SKei(), rk1.SKei()) || !bytes.Equal(ik1.SKpr(), rk1.SKpr()) || !bytes.Equal(ik1.SKd(), rk1.SKd()) {
		t.Fatal("the two ends disagree after the additional key exchange")
	}
	if bytes.Equal(ik1.SKd(), ik.SKd()) || bytes.Equal(ik1.SKei(), ik.SKei()) {
		t.Fatal("the additional key exchange did not change the keys")
	}
	// The updated keys work as ciphers.
	out, _, err := ik1.Ciphers(true)
	if err != nil {
		t.Fatal(err)
	}
	_, in, _ := rk1.Ciphers(false)
	sealed, _ := out.Seal(nil, []byte("head"), []byte("plaintext"))
	if pt, err := in.Open(nil, []byte("head"), sealed); err != nil || string(pt) != "plaintext" {
		t.Fatalf("cipher with updated keys: %v", err)
	}
}

// TestSuiteAddKE reads ADDKE transforms from chosen proposals.
func TestSuiteAddKE(t *testing.T) {
	p := &message.Proposal{Protocol: message.ProtocolIKE, Transforms: []message.Transform{
		message.EncrTransform(message.EncrAESGCM16, 256), message.PRFTransform(message.PRFHMACSHA2384),
		message.KETransform(message.DHCurve25519), message.AddKETransform(1, message.DHMLKEM768),
		message.AddKETransform(2, message.DHNone), message.AddKETransform(3, message.DHMLKEM1024)}}
	s, err := ikecrypto.IKESuiteFromProposal(p)
	if err != nil {
		t.Fatal(err)
	}
	if ke := s.AdditionalKEs(); len(ke) != 2 || ke[0] != message.DHMLKEM768 || ke[1] != message.DHMLKEM1024 {
		t.Fatalf("AdditionalKEs %v", ke)
	}
	if got := s.String(); got != "ENCR_AES_GCM_16/256-NONE-PRF_HMAC_SHA2_384-CURVE_25519-ke1_ML_KEM_768-ke3_ML_KEM_1024" {
		t.Errorf("String %s", got)
	}
	// An unsupported method, or two transforms of one ADDKE type, fail.
	bad := *p
	bad.Transforms = append(append([]message.Transform(nil), p.Transforms[:3]...), message.AddKETransform(1, message.DHMLKEM512))
	if _, err := ikecrypto.IKESuiteFromProposal(&bad); !errors.Is(err, ikecrypto.ErrUnsupported) {
		t.Errorf("ML-KEM-512: %v", err)
	}
	bad.Transforms = append(append([]message.Transform(nil), p.Transforms...), message.AddKETransform(1, message.DHMLKEM1024))
	if _, err := ikecrypto.IKESuiteFromProposal(&bad); !errors.Is(err, ikecrypto.ErrProposal) {
		t.Errorf("two ADDKE1: %v", err)
	}
	esp := &message.Proposal{Protocol: message.ProtocolESP, SPI: []byte{1, 2, 3, 4}, Transforms: []message.Transform{
		message.EncrTransform(message.EncrAESGCM16, 128), message.KETransform(message.DHECP256),
		message.AddKETransform(1, message.DHMLKEM768), message.ESNTransform(message.ESNNo)}}
	cs, err := ikecrypto.ChildSuiteFromProposal(esp)
	if err != nil || len(cs.AdditionalKEs()) != 1 {
		t.Fatalf("child suite %v %v", cs, err)
	}
}
