package ikecrypto_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

func prf384(key []byte, data ...[]byte) []byte {
	m := hmac.New(sha512.New384, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

func plus384(key, seed []byte, n int) []byte {
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		t = prf384(key, t, seed, []byte{i})
		out = append(out, t...)
	}
	return out[:n]
}

// TestDeriveIKEKeysReference recomputes RFC 7296 §2.14 and §2.18 by hand for
// a suite with separate integrity keys and a 384-bit PRF.
func TestDeriveIKEKeysReference(t *testing.T) {
	s := ikecrypto.IKESuite{Encr: message.EncrAESCBC, EncrKeyBits: 192, Integ: message.IntegHMACSHA2512256, PRF: message.PRFHMACSHA2384, DH: message.DHECP256}
	gir, ni, nr := bytes.Repeat([]byte{0x31}, 32), bytes.Repeat([]byte{0x4e}, 16), bytes.Repeat([]byte{0x52}, 48)
	spii, spir := uint64(0x0102030405060708), uint64(0xa1a2a3a4a5a6a7a8)
	k, err := ikecrypto.DeriveIKEKeys(s, gir, ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	spis := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, spii), spir)
	seed := prf384(append(append([]byte(nil), ni...), nr...), gir)
	km := plus384(seed, append(append(append([]byte(nil), ni...), nr...), spis...), 3*48+2*64+2*24)
	want := map[string][]byte{
		"SKd": km[0:48], "SKai": km[48:112], "SKar": km[112:176], "SKei": km[176:200],
		"SKer": km[200:224], "SKpi": km[224:272], "SKpr": km[272:320],
	}
	got := map[string]ikecrypto.Key{"SKd": k.SKd(), "SKai": k.SKai(), "SKar": k.SKar(), "SKei": k.SKei(), "SKer": k.SKer(), "SKpi": k.SKpi(), "SKpr": k.SKpr()}
	for n, w := range want {
		if !bytes.Equal(got[n], w) {
			t.Errorf("%s differs", n)
		}
	}

	// IKE SA rekey (§2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
	// with the old PRF, then prf+ with the new one (here SHA2-256 -> 384).
	newGir, nni, nnr := bytes.Repeat([]byte{0x77}, 32), bytes.Repeat([]byte{0x88}, 32), bytes.Repeat([]byte{0x99}, 32)
	oldSKd := bytes.Repeat([]byte{0x0d}, 32)
	rk, err := ikecrypto.DeriveRekeyedIKEKeys(s, message.PRFHMACSHA2256, oldSKd, newGir, nni, nnr, 5, 6)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, oldSKd)
	m.Write(newGir)
	m.Write(nni)
	m.Write(nnr)
	rseed := m.Sum(nil)
	rs := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 5), 6)
	rkm := plus384(rseed, append(append(append([]byte(nil), nni...), nnr...), rs...), 48)
	if !bytes.Equal(rk.SKd(), rkm) {
		t.Errorf("rekeyed SK_d differs")
	}
}

func TestDeriveChildKeysPFS(t *testing.T) {
	skd := bytes.Repeat([]byte{0xd0}, 48)
	gir, ni, nr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	cs := ikecrypto.ChildSuite{Encr: message.EncrAESCBC, EncrKeyBits: 256, Integ: message.IntegHMACSHA2256128, DH: message.DHCurve25519}
	for _, g := range [][]byte{nil, gir} {
		k, err := ikecrypto.DeriveChildKeys(message.PRFHMACSHA2384, skd, cs, g, ni, nr)
		if err != nil {
			t.Fatal(err)
		}
		km := plus384(skd, append(append(append([]byte(nil), g...), ni...), nr...), 2*(32+32))
		if !bytes.Equal(k.EncrI, km[0:32]) || !bytes.Equal(k.IntegI, km[32:64]) || !bytes.Equal(k.EncrR, km[64:96]) || !bytes.Equal(k.IntegR, km[96:128]) {
			t.Errorf("KEYMAT order or content differs (PFS %v)", g != nil)
		}
	}
	gcm := ikecrypto.ChildSuite{Encr: message.EncrAESGCM16, EncrKeyBits: 256}
	k, err := ikecrypto.DeriveChildKeys(message.PRFHMACSHA2384, skd, gcm, nil, ni, nr)
	if err != nil || len(k.EncrI) != 36 || len(k.EncrR) != 36 || len(k.IntegI) != 0 {
		t.Fatalf("GCM child keys: %v %d", err, len(k.EncrI))
	}
	cc := ikecrypto.ChildSuite{Encr: message.EncrChaCha20Poly1305, ESN: true}
	if k, err := ikecrypto.DeriveChildKeys(message.PRFHMACSHA2256, skd, cc, nil, ni, nr); err != nil || len(k.EncrI) != 36 {
		t.Fatalf("ChaCha child keys: %v", err)
	}
}

func TestSuites(t *testing.T) {
	prop := func(p message.ProtocolID, ts ...message.Transform) *message.Proposal {
		spi := []byte(nil)
		if p == message.ProtocolESP {
			spi = []byte{1, 2, 3, 4}
		}
		return &message.Proposal{Num: 1, Protocol: p, SPI: spi, Transforms: ts}
	}
	gcm := message.EncrTransform(message.EncrAESGCM16, 256)
	cbc := message.EncrTransform(message.EncrAESCBC, 128)
	prf := message.PRFTransform(message.PRFHMACSHA2256)
	integ := message.IntegTransform(message.IntegHMACSHA2256128)
	ke := message.KETransform(message.DHCurve25519)
	s, err := ikecrypto.IKESuiteFromProposal(prop(message.ProtocolIKE, gcm, prf, ke))
	if err != nil || s != (ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 256, PRF: message.PRFHMACSHA2256, DH: message.DHCurve25519}) {
		t.Fatalf("%v %v", s, err)
	}
	if e, i, _ := s.KeyLengths(); e != 36 || i != 0 {
		t.Errorf("GCM-256 key lengths %d %d", e, i)
	}
	s, err = ikecrypto.IKESuiteFromProposal(prop(message.ProtocolIKE, cbc, integ, prf, ke))
	if e, i, _ := s.KeyLengths(); err != nil || e != 16 || i != 32 {
		t.Errorf("CBC key lengths %d %d %v", e, i, err)
	}
	bad := []*message.Proposal{
		prop(message.ProtocolESP, gcm, prf, ke),
		prop(message.ProtocolIKE, prf, ke),
		prop(message.ProtocolIKE, gcm, ke),
		prop(message.ProtocolIKE, gcm, prf),
		prop(message.ProtocolIKE, gcm, gcm, prf, ke),
		prop(message.ProtocolIKE, gcm, integ, prf, ke),
		prop(message.ProtocolIKE, cbc, prf, ke),
		prop(message.ProtocolIKE, message.EncrTransform(message.EncrAESCBC, 0), integ, prf, ke),
		prop(message.ProtocolIKE, gcm, prf, message.KETransform(message.DHModp1024)),
	}
	for i, p := range bad {
		if _, err := ikecrypto.IKESuiteFromProposal(p); err == nil {
			t.Errorf("bad IKE proposal %d accepted: %v", i, p)
		} else if !errors.Is(err, ikecrypto.ErrProposal) && !errors.Is(err, ikecrypto.ErrUnsupported) {
			t.Errorf("bad IKE proposal %d: untyped error %v", i, err)
		}
	}
	cs, err := ikecrypto.ChildSuiteFromProposal(prop(message.ProtocolESP, cbc, integ, ke, message.ESNTransform(message.ESNYes)))
	if err != nil || !cs.ESN || cs.DH != message.DHCurve25519 || cs.Integ != message.IntegHMACSHA2256128 {
		t.Fatalf("child suite %+v %v", cs, err)
	}
	if _, err := ikecrypto.ChildSuiteFromProposal(prop(message.ProtocolAH, integ)); err == nil {
		t.Error("AH accepted")
	}
}

// TestNATDetectionHash recomputes RFC 7296 §2.23 by hand.
func TestNATDetectionHash(t *testing.T) {
	for _, ap := range []string{"192.0.2.1:500", "[2001:db8::7]:4500", "[::ffff:192.0.2.1]:500"} {
		a := netip.MustParseAddrPort(ap)
		var in []byte
		in = binary.BigEndian.AppendUint64(in, 0x1111111111111111)
		in = binary.BigEndian.AppendUint64(in, 0)
		in = append(in, a.Addr().Unmap().AsSlice()...)
		in = binary.BigEndian.AppendUint16(in, a.Port())
		want := sha1.Sum(in)
		got := ikecrypto.NATDetectionHash(0x1111111111111111, 0, a)
		if !bytes.Equal(got, want[:]) || len(got) != 20 {
			t.Errorf("%s: %x", ap, got)
		}
	}
	a := ikecrypto.NATDetectionHash(1, 2, netip.MustParseAddrPort("192.0.2.1:500"))
	b := ikecrypto.NATDetectionHash(1, 2, netip.MustParseAddrPort("[::ffff:192.0.2.1]:500"))
	c := ikecrypto.NATDetectionHash(1, 2, netip.MustParseAddrPort("192.0.2.1:4500"))
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Error("mapped address or port handling")
	}
	ap := netip.MustParseAddrPort("[2001:db8::7]:4500")
	if sum := ikecrypto.NATDetectionSum(3, 4, ap); !bytes.Equal(sum[:], ikecrypto.NATDetectionHash(3, 4, ap)) {
		t.Error("NATDetectionSum differs from NATDetectionHash")
	}
	if n := testing.AllocsPerRun(100, func() { _ = ikecrypto.NATDetectionSum(3, 4, ap) }); n != 0 {
		t.Errorf("NATDetectionSum: %v allocations, want 0", n)
	}
}

// TestRedaction checks that no key bytes reach fmt, slog or JSON.
// TestNewIKEKeys: each key reads back as given, empty keys included, the
// copies do not alias the arguments, and more than 65,535 octets in all
// is refused. The struct stays in the 80-octet size class.
func TestNewIKEKeys(t *testing.T) {
	in := [][]byte{[]byte("d-key"), nil, []byte("ar"), []byte("ei-key-with-salt"), []byte("er"), []byte("pi"), []byte("pr-key")}
	k, err := ikecrypto.NewIKEKeys(ikecrypto.IKESuite{}, in[0], in[1], in[2], in[3], in[4], in[5], in[6])
	if err != nil {
		t.Fatal(err)
	}
	got := []ikecrypto.Key{k.SKd(), k.SKai(), k.SKar(), k.SKei(), k.SKer(), k.SKpi(), k.SKpr()}
	for i := range in {
		if !bytes.Equal(got[i], in[i]) {
			t.Errorf("key %d: got %q, want %q", i, []byte(got[i]), in[i])
		}
	}
	in[0][0] = 'X'
	if k.SKd()[0] != 'd' {
		t.Error("NewIKEKeys kept the caller's slice")
	}
	// A key is capped: appending to it must not write into the next key.
	_ = append(k.SKd(), 'Z')
	if !bytes.Equal(k.SKai(), nil) || !bytes.Equal(k.SKar(), []byte("ar")) {
		t.Error("appending to SK_d wrote into the next key")
	}
	big := make([]byte, 40000)
	if _, err := ikecrypto.NewIKEKeys(ikecrypto.IKESuite{}, big, big, nil, nil, nil, nil, nil); err == nil {
		t.Error("80,000 octets of keys accepted")
	}
	if n := unsafe.Sizeof(ikecrypto.IKEKeys{}); n > 80 {
		t.Errorf("IKEKeys is %d octets, over the 80-octet size class", n)
	}
}

func TestRedaction(t *testing.T) {
	s := ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128, PRF: message.PRFHMACSHA2256, DH: message.DHCurve25519}
	k, err := ikecrypto.DeriveIKEKeys(s, []byte("secret"), bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	ck, _ := ikecrypto.DeriveChildKeys(s.PRF, k.SKd(), ikecrypto.ChildSuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128}, nil, []byte("n"), []byte("m"))
	var outs []string
	for _, v := range []any{k, *k, k.SKd(), ck, *ck} {
		for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			outs = append(outs, fmt.Sprintf(f, v))
		}
		j, _ := json.Marshal(v)
		outs = append(outs, string(j))
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("keys", "skd", k.SKd(), "all", k)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("keys", "skd", k.SKd(), "child", ck)
	outs = append(outs, buf.String())
	for _, key := range []ikecrypto.Key{k.SKd(), k.SKei(), k.SKer(), k.SKpi(), k.SKpr(), ck.EncrI, ck.EncrR} {
		hx := hex.EncodeToString(key[:6])
		for _, o := range outs {
			if strings.Contains(strings.ToLower(o), hx) || strings.Contains(o, fmt.Sprint([]byte(key[:6]))[1:10]) {
				t.Fatalf("key material in output: %s", o)
			}
		}
	}
	if got := fmt.Sprint(k.SKd()); got != "Key(32 bytes, redacted)" {
		t.Errorf("Key prints %q", got)
	}
	z := ikecrypto.Key{1, 2, 3}
	z.Zero()
	if !bytes.Equal(z, []byte{0, 0, 0}) {
		t.Error("Zero")
	}
}

func TestSignedOctets(t *testing.T) {
	// RFC 7296 §2.15 written out for PRF_HMAC_SHA2_384.
	msg, nonceR, skpi, idb := []byte("IKE_SA_INIT request"), bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{8}, 48), []byte{2, 0, 0, 0, 'a'}
	got, err := ikecrypto.SignedOctets(message.PRFHMACSHA2384, skpi, msg, nonceR, idb)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte(nil), msg...), nonceR...), prf384(skpi, idb)...)
	if !bytes.Equal(got, want) {
		t.Fatal("signed octets differ")
	}
	auth, _ := ikecrypto.PSKAuth(message.PRFHMACSHA2384, []byte("psk"), got)
	if !bytes.Equal(auth, prf384(prf384([]byte("psk"), []byte("Key Pad for IKEv2")), want)) {
		t.Fatal("AUTH differs")
	}
	if _, err := ikecrypto.PSKAuth(message.PRFHMACMD5, nil, nil); !errors.Is(err, ikecrypto.ErrUnsupported) {
		t.Errorf("MD5 PRF: %v", err)
	}
}

// TestDropAuthKeys: after DropAuthKeys the other five keys read back
// unchanged from a new allocation, SK_pi and SK_pr
// are empty, and the old key material is wiped.
func TestDropAuthKeys(t *testing.T) {
	in := [][]byte{[]byte("d-key-0123456789"), []byte("ai"), []byte("ar"), []byte("ei-key-with-salt"), []byte("er-key"), []byte("pi-key-01234567"), []byte("pr-key-01234567")}
	k, err := ikecrypto.NewIKEKeys(ikecrypto.IKESuite{}, in[0], in[1], in[2], in[3], in[4], in[5], in[6])
	if err != nil {
		t.Fatal(err)
	}
	old := []ikecrypto.Key{k.SKd(), k.SKai(), k.SKar(), k.SKei(), k.SKer(), k.SKpi(), k.SKpr()}
	k.DropAuthKeys()
	got := []ikecrypto.Key{k.SKd(), k.SKai(), k.SKar(), k.SKei(), k.SKer()}
	for i, g := range got {
		if !bytes.Equal(g, in[i]) {
			t.Errorf("key %d: got %q, want %q", i, []byte(g), in[i])
		}
		if len(g) > 0 && &g[0] == &old[i][0] {
			t.Errorf("key %d still in the old allocation", i)
		}
	}
	if len(k.SKpi()) != 0 || len(k.SKpr()) != 0 {
		t.Errorf("SK_pi %q, SK_pr %q after DropAuthKeys, want empty", []byte(k.SKpi()), []byte(k.SKpr()))
	}
	for i, o := range old {
		if len(bytes.Trim(o, "\x00")) != 0 {
			t.Errorf("old key %d not wiped: %q", i, []byte(o))
		}
	}
	k.DropAuthKeys() // again: nothing to drop
	if !bytes.Equal(k.SKd(), in[0]) || !bytes.Equal(k.SKer(), in[4]) {
		t.Error("a second DropAuthKeys changed the keys")
	}
}
