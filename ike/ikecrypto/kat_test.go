package ikecrypto_test

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

func h(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 7748 §6.1: X25519 Diffie-Hellman.
func TestX25519RFC7748(t *testing.T) {
	alicePriv := h(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	alicePub := h(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	bobPriv := h(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
	bobPub := h(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	shared := h(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
	a, err := ikecrypto.NewDHFromPrivate(message.DHCurve25519, alicePriv)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ikecrypto.NewDHFromPrivate(message.DHCurve25519, bobPriv)
	if !bytes.Equal(a.PublicValue(), alicePub) || !bytes.Equal(b.PublicValue(), bobPub) {
		t.Fatalf("public values differ")
	}
	for _, c := range []struct {
		d    *ikecrypto.DH
		peer []byte
	}{{a, bobPub}, {b, alicePub}} {
		s, err := c.d.SharedSecret(c.peer)
		if err != nil || !bytes.Equal(s, shared) {
			t.Fatalf("shared secret %x, %v", []byte(s), err)
		}
	}
	// RFC 7748 §5.2, the two single-iteration vectors (scalar, u, result).
	for _, v := range [][3]string{
		{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
	} {
		d, _ := ikecrypto.NewDHFromPrivate(message.DHCurve25519, h(t, v[0]))
		s, err := d.SharedSecret(h(t, v[1]))
		if err != nil || !bytes.Equal(s, h(t, v[2])) {
			t.Errorf("RFC 7748 §5.2: got %x, %v", []byte(s), err)
		}
	}
	// Low-order points give the all-zero secret, which RFC 8031 §2 rejects.
	for _, u := range []string{strings.Repeat("00", 32), "01" + strings.Repeat("00", 31),
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"} {
		_, err := a.SharedSecret(h(t, u))
		var pe *ikecrypto.PublicValueError
		if !errors.As(err, &pe) || !errors.Is(err, ikecrypto.ErrInvalidPublicValue) || pe.Group != message.DHCurve25519 {
			t.Errorf("low-order point %s: %v", u[:8], err)
		}
	}
}

// RFC 5903 §8.1: the 256-bit random ECP group.
func TestECP256RFC5903(t *testing.T) {
	i := h(t, "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433")
	gi := h(t, `DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180
		5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3`)
	r := h(t, "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53")
	gr := h(t, `D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63
		56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB`)
	girX := h(t, "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE")
	di, err := ikecrypto.NewDHFromPrivate(message.DHECP256, i)
	if err != nil {
		t.Fatal(err)
	}
	dr, _ := ikecrypto.NewDHFromPrivate(message.DHECP256, r)
	if !bytes.Equal(di.PublicValue(), gi) || !bytes.Equal(dr.PublicValue(), gr) {
		t.Fatalf("public values: %x / %x", di.PublicValue(), dr.PublicValue())
	}
	s1, err1 := di.SharedSecret(gr)
	s2, err2 := dr.SharedSecret(gi)
	if err1 != nil || err2 != nil || !bytes.Equal(s1, girX) || !bytes.Equal(s2, girX) {
		t.Fatalf("g^ir: %x %x (%v %v)", []byte(s1), []byte(s2), err1, err2)
	}
	// A point off the curve, a 0x04-prefixed value, a short value.
	off := append([]byte(nil), gr...)
	off[63] ^= 1
	for _, bad := range [][]byte{off, append([]byte{4}, gr...), gr[:63], make([]byte, 64)} {
		if _, err := di.SharedSecret(bad); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
			t.Errorf("bad point %x...: %v", bad[:4], err)
		}
		if err := ikecrypto.CheckPublicValue(message.DHECP256, bad); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
			t.Errorf("CheckPublicValue %x...: %v", bad[:4], err)
		}
	}
}

// TestMODP2048 checks the group against OpenSSL's modp_2048, and the
// public value checks.
func TestMODP2048(t *testing.T) {
	vals := map[string][]byte{}
	fh, err := os.Open("testdata/modp2048-openssl.txt")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 2 && !strings.HasPrefix(fs[0], "#") {
			vals[fs[0]] = h(t, fs[1])
		}
	}
	fh.Close()
	pad := func(b []byte) []byte { return new(big.Int).SetBytes(b).FillBytes(make([]byte, 256)) }
	d, err := ikecrypto.NewDHFromPrivate(message.DHModp2048, vals["privA"])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.PublicValue(), pad(vals["pubA"])) {
		t.Fatalf("public value differs from OpenSSL's")
	}
	s, err := d.SharedSecret(pad(vals["pubB"]))
	if err != nil || !bytes.Equal(s, pad(vals["secret"])) || len(s) != 256 {
		t.Fatalf("secret differs from OpenSSL's: %v", err)
	}

	// Fresh keys agree, and values are 256 octets.
	x, _ := ikecrypto.NewDH(message.DHModp2048)
	y, _ := ikecrypto.NewDH(message.DHModp2048)
	sx, err1 := x.SharedSecret(y.PublicValue())
	sy, err2 := y.SharedSecret(x.PublicValue())
	if err1 != nil || err2 != nil || !bytes.Equal(sx, sy) || len(x.PublicValue()) != 256 {
		t.Fatalf("agreement: %v %v", err1, err2)
	}

	prime := modpPrime(t)
	if !prime.ProbablyPrime(16) || !new(big.Int).Rsh(prime, 1).ProbablyPrime(16) {
		t.Fatal("p or (p-1)/2 is not prime")
	}
	for name, v := range map[string]*big.Int{
		"0": big.NewInt(0), "1": big.NewInt(1), "p-1": new(big.Int).Sub(prime, big.NewInt(1)),
		"p": prime, "p+1": new(big.Int).Add(prime, big.NewInt(1)),
	} {
		var b []byte
		if v.BitLen() <= 2048 {
			b = v.FillBytes(make([]byte, 256))
		} else {
			b = v.Bytes()
		}
		if _, err := d.SharedSecret(b); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
			t.Errorf("y = %s: %v", name, err)
		}
	}
	if _, err := d.SharedSecret(pad(vals["pubB"])[1:]); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
		t.Errorf("255-octet value: %v", err)
	}
	if _, err := d.SharedSecret(big.NewInt(2).FillBytes(make([]byte, 256))); err != nil {
		t.Errorf("y = 2 rejected: %v", err)
	}
}

// modpPrime returns RFC 3526's prime and checks, through the public value
// bounds (p-2 accepted, p-1 rejected), that the implementation uses it.
func modpPrime(t *testing.T) *big.Int {
	p, ok := new(big.Int).SetString("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
	if !ok {
		t.Fatal("bad prime")
	}
	pm2 := new(big.Int).Sub(p, big.NewInt(2)).FillBytes(make([]byte, 256))
	pm1 := new(big.Int).Sub(p, big.NewInt(1)).FillBytes(make([]byte, 256))
	if ikecrypto.CheckPublicValue(message.DHModp2048, pm2) != nil || ikecrypto.CheckPublicValue(message.DHModp2048, pm1) == nil {
		t.Fatal("implementation's prime is not RFC 3526's")
	}
	return p
}

func TestDHGeneral(t *testing.T) {
	for _, g := range []message.DHGroup{message.DHCurve25519, message.DHECP256, message.DHECP384, message.DHECP521, message.DHModp2048, message.DHModp3072, message.DHModp4096} {
		a, err := ikecrypto.NewDH(g)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ikecrypto.NewDH(g)
		if len(a.PublicValue()) != ikecrypto.PublicValueLen(g) || a.Group() != g {
			t.Errorf("%v: public value of %d octets", g, len(a.PublicValue()))
		}
		if err := ikecrypto.CheckPublicValue(g, b.PublicValue()); err != nil {
			t.Errorf("%v: %v", g, err)
		}
		s1, _ := a.SharedSecret(b.PublicValue())
		s2, _ := b.SharedSecret(a.PublicValue())
		if !bytes.Equal(s1, s2) || len(s1) == 0 {
			t.Errorf("%v: no agreement", g)
		}
		if got := a.String(); got != "DH("+g.String()+", private key redacted)" {
			t.Errorf("DH.String: %q", got)
		}
		if _, err := a.SharedSecret(make([]byte, ikecrypto.PublicValueLen(g)+1)); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
			t.Errorf("%v: long value: %v", g, err)
		}
	}
	for _, g := range []message.DHGroup{message.DHModp1024, message.DHModp6144, message.DHCurve448, 0, 1000} {
		if _, err := ikecrypto.NewDH(g); !errors.Is(err, ikecrypto.ErrUnsupported) {
			t.Errorf("group %v: %v", g, err)
		}
		if err := ikecrypto.CheckPublicValue(g, []byte{1}); !errors.Is(err, ikecrypto.ErrUnsupported) {
			t.Errorf("group %v: %v", g, err)
		}
	}
}

// RFC 4231 test cases 1, 2 and 6 for the three PRFs.
func TestPRFRFC4231(t *testing.T) {
	longKey := bytes.Repeat([]byte{0xaa}, 131)
	cases := []struct {
		key, data []byte
		want      map[message.PRFID]string
	}{
		{bytes.Repeat([]byte{0x0b}, 20), []byte("Hi There"), map[message.PRFID]string{
			message.PRFHMACSHA2256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
			message.PRFHMACSHA2384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
			message.PRFHMACSHA2512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
		}},
		{[]byte("Jefe"), []byte("what do ya want for nothing?"), map[message.PRFID]string{
			message.PRFHMACSHA2256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
			message.PRFHMACSHA2384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
			message.PRFHMACSHA2512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
		}},
		{longKey, []byte("Test Using Larger Than Block-Size Key - Hash Key First"), map[message.PRFID]string{
			message.PRFHMACSHA2256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
			message.PRFHMACSHA2384: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
			message.PRFHMACSHA2512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
		}},
	}
	for i, c := range cases {
		for id, want := range c.want {
			p, err := ikecrypto.NewPRF(id)
			if err != nil {
				t.Fatal(err)
			}
			// Split the data to exercise the variadic form.
			got := p.Sum(c.key, c.data[:3], c.data[3:])
			if hex.EncodeToString(got) != want || p.Size() != len(want)/2 || p.ID() != id {
				t.Errorf("case %d %v: %x", i+1, id, got)
			}
		}
	}
	if _, err := ikecrypto.NewPRF(message.PRFAES128XCBC); !errors.Is(err, ikecrypto.ErrUnsupported) {
		t.Errorf("PRF_AES128_XCBC: %v", err)
	}
}

// refPRFPlus is prf+ written out from RFC 7296 §2.13.
func refPRFPlus(key, seed []byte, n int) []byte {
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(sha256.New, key)
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{i})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n]
}

func TestPRFPlus(t *testing.T) {
	p, _ := ikecrypto.NewPRF(message.PRFHMACSHA2256)
	key, seed := []byte("prf+ key"), []byte("a seed of some length")
	for _, n := range []int{0, 1, 31, 32, 33, 64, 100, 255 * 32} {
		got, err := p.Plus(key, seed, n)
		if err != nil || !bytes.Equal(got, refPRFPlus(key, seed, n)) {
			t.Errorf("n=%d: %v", n, err)
		}
	}
	if _, err := p.Plus(key, seed, 255*32+1); !errors.Is(err, ikecrypto.ErrPRFPlusTooLong) {
		t.Errorf("256 blocks: %v", err)
	}
	// T1 = prf(K, S | 0x01) explicitly.
	got, _ := p.Plus(key, seed, 32)
	m := hmac.New(sha256.New, key)
	m.Write(append(append([]byte(nil), seed...), 1))
	if !bytes.Equal(got, m.Sum(nil)) {
		t.Error("T1 wrong")
	}
}
