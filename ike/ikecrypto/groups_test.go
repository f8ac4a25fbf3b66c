package ikecrypto_test

import (
	"bufio"
	"bytes"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// RFC 5903 §8.2 and §8.3: the 384- and 521-bit random ECP groups (IKE
// groups 20 and 21). Each vector: i, g^i (x | y), r, g^r (x | y), and
// g^ir's x coordinate, the shared secret.
func TestECPRFC5903(t *testing.T) {
	for _, v := range []struct {
		sec                            string
		g                              message.DHGroup
		i, gix, giy, r, grx, gry, girx string
	}{
		{"8.2", message.DHECP384,
			"099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655 E35B5380 41E649EE 3FAEF896 783AB194",
			"667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6 DE3AC808 ACB4BDB4 C88732AE E95F41AA",
			"9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E EB9FCFF3 C2C947DA E69B4C63 4573A81C",
			"41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942 E0308312 916B8ED2 960E4BD5 5A7448FC",
			"E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D 0D1AC43A 0336DEF9 6FDA41D0 774A3571",
			"DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF F83FA401 42209DFF 5EAAD96D B9E6386C",
			"11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4 D6031355 69B9E9D0 9CF5D4A2 70F59746"},
		{"8.3", message.DHECP521,
			"0037ADE9 319A89F4 DABDB3EF 411AACCC A5123C61 ACAB57B5 393DCE47 608172A0 95AA85A3 0FE1C295 2C6771D9 37BA9777 F5957B26 39BAB072 462F68C2 7A57382D 4A52",
			"0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B D98BAB43 57C9ECBE E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4 601723C4 195D176C ED3E",
			"017CAE20 B6641D2E EB695786 D8C94614 6239D099 E18E1D5A 514C739D 7CB4A10A D8A78801 5AC405D7 799DC75E 7B7D5B6C F2261A6A 7F150743 8BF01BEB 6CA3926F 9582",
			"0145BA99 A847AF43 793FDD0E 872E7CDF A16BE30F DC780F97 BCCC3F07 8380201E 9C677D60 0B343757 A3BDBF2A 3163E4C2 F869CCA7 458AA4A4 EFFC311F 5CB15168 5EB9",
			"00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39 728B5E57 39735A21 9B97C356 436ADC6E 95BB0352 F6BE64A6 C2912D4E F2D0433C ED2B6171 640012D9 460F",
			"015C6822 6383956E 3BD066E7 97B623C2 7CE0EAC2 F551A10C 2C724D98 52077B87 220B6536 C5C408A1 D2AEBB8E 86D678AE 49CB5709 1F473229 6579AB44 FCD17F0F C56A",
			"01144C7D 79AE6956 BC8EDB8E 7C787C45 21CB086F A64407F9 7894E5E6 B2D79B04 D1427E73 CA4BAA24 0A347868 59810C06 B3C715A3 A8CC3151 F2BEE417 996D19F3 DDEA"},
	} {
		t.Run(v.g.String(), func(t *testing.T) {
			gi := append(h(t, v.gix), h(t, v.giy)...)
			gr := append(h(t, v.grx), h(t, v.gry)...)
			di, err := ikecrypto.NewDHFromPrivate(v.g, h(t, v.i))
			if err != nil {
				t.Fatal(err)
			}
			dr, err := ikecrypto.NewDHFromPrivate(v.g, h(t, v.r))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(di.PublicValue(), gi) || !bytes.Equal(dr.PublicValue(), gr) {
				t.Fatalf("RFC 5903 §%s: public values differ", v.sec)
			}
			if len(gi) != ikecrypto.PublicValueLen(v.g) {
				t.Fatalf("KE data of %d octets, PublicValueLen %d", len(gi), ikecrypto.PublicValueLen(v.g))
			}
			s1, err1 := di.SharedSecret(gr)
			s2, err2 := dr.SharedSecret(gi)
			if err1 != nil || err2 != nil || !bytes.Equal(s1, h(t, v.girx)) || !bytes.Equal(s2, h(t, v.girx)) {
				t.Fatalf("RFC 5903 §%s: g^ir %x %x (%v %v)", v.sec, []byte(s1), []byte(s2), err1, err2)
			}
			off := bytes.Clone(gr)
			off[len(off)-1] ^= 1
			for _, bad := range [][]byte{off, append([]byte{4}, gr...), gr[:len(gr)-1], make([]byte, len(gr))} {
				if _, err := di.SharedSecret(bad); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
					t.Errorf("bad point %x...: %v", bad[:4], err)
				}
			}
		})
	}
}

func readVectors(t *testing.T, name string) map[string][]byte {
	t.Helper()
	vals := map[string][]byte{}
	fh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 2 && !strings.HasPrefix(fs[0], "#") {
			vals[fs[0]] = h(t, fs[1])
		}
	}
	return vals
}

// TestMODPOpenSSL checks groups 15 and 16 against key agreements OpenSSL
// 3.0 computed with its modp_3072 and modp_4096 groups, and checks that the
// primes are the safe primes OpenSSL uses.
func TestMODPOpenSSL(t *testing.T) {
	for _, c := range []struct {
		g    message.DHGroup
		file string
		size int
	}{
		{message.DHModp3072, "testdata/modp3072-openssl.txt", 384},
		{message.DHModp4096, "testdata/modp4096-openssl.txt", 512},
	} {
		t.Run(c.g.String(), func(t *testing.T) {
			vals := readVectors(t, c.file)
			pad := func(b []byte) []byte { return new(big.Int).SetBytes(b).FillBytes(make([]byte, c.size)) }
			d, err := ikecrypto.NewDHFromPrivate(c.g, vals["privA"])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d.PublicValue(), pad(vals["pubA"])) {
				t.Fatal("public value differs from OpenSSL's")
			}
			s, err := d.SharedSecret(pad(vals["pubB"]))
			if err != nil || !bytes.Equal(s, pad(vals["secret"])) {
				t.Fatalf("secret differs from OpenSSL's: %v", err)
			}

			p := new(big.Int).SetBytes(vals["prime"])
			if p.BitLen() != 8*c.size || !p.ProbablyPrime(8) || !new(big.Int).Rsh(p, 1).ProbablyPrime(8) {
				t.Fatal("OpenSSL's prime is not a safe prime of the group's size")
			}
			// The implementation uses that prime: p-2 is a valid public
			// value, p-1 is not.
			pm2 := new(big.Int).Sub(p, big.NewInt(2)).FillBytes(make([]byte, c.size))
			pm1 := new(big.Int).Sub(p, big.NewInt(1)).FillBytes(make([]byte, c.size))
			if ikecrypto.CheckPublicValue(c.g, pm2) != nil {
				t.Fatal("p-2 rejected")
			}
			for name, y := range map[string][]byte{"p-1": pm1, "0": make([]byte, c.size),
				"1": big.NewInt(1).FillBytes(make([]byte, c.size)), "p": p.FillBytes(make([]byte, c.size)),
				"short": pad(vals["pubB"])[1:]} {
				if _, err := d.SharedSecret(y); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
					t.Errorf("y = %s: %v", name, err)
				}
			}

			// Fresh keys agree (the exponent size is checked in
			// TestMODPExponentSize).
			a, _ := ikecrypto.NewDH(c.g)
			b, _ := ikecrypto.NewDH(c.g)
			sa, err1 := a.SharedSecret(b.PublicValue())
			sb, err2 := b.SharedSecret(a.PublicValue())
			if err1 != nil || err2 != nil || !bytes.Equal(sa, sb) || len(sa) != c.size {
				t.Fatalf("agreement: %v %v", err1, err2)
			}
		})
	}
}

// An X25519 value needs only its length checked (every 32 octets are a
// u-coordinate; a low-order one fails when the secret is computed): no
// allocation, as on every IKE_SA_INIT with the group.
func TestCheckPublicValueX25519(t *testing.T) {
	peer := make([]byte, 32)
	if n := testing.AllocsPerRun(100, func() { _ = ikecrypto.CheckPublicValue(message.DHCurve25519, peer) }); n != 0 {
		t.Errorf("CheckPublicValue(X25519): %v allocations, want 0", n)
	}
	if err := ikecrypto.CheckPublicValue(message.DHCurve25519, peer[:31]); !errors.Is(err, ikecrypto.ErrInvalidPublicValue) {
		t.Errorf("31 octets: %v", err)
	}
}
