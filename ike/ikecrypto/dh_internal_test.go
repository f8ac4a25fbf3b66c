package ikecrypto

import (
	"math/big"
	"testing"

	"github.com/keyplane/keyplane/ike/message"
)

// TestMODPExponentSize checks the private exponents NewDH draws: RFC 3526
// §8's "Strength Estimate 2" sizes under a fixed top bit for groups 15 and
// 16, uniform in [2, p-2] for group 14.
func TestMODPExponentSize(t *testing.T) {
	for g, want := range map[message.DHGroup]int{message.DHModp3072: 421, message.DHModp4096: 481} {
		seen := map[string]bool{}
		for range 20 {
			d, err := NewDH(g)
			if err != nil {
				t.Fatal(err)
			}
			if d.x.BitLen() != want {
				t.Fatalf("%v: exponent of %d bits, want %d", g, d.x.BitLen(), want)
			}
			seen[d.x.String()] = true
		}
		if len(seen) != 20 {
			t.Fatalf("%v: repeated exponents", g)
		}
	}
	p := modpGroups[message.DHModp2048].p
	for range 20 {
		d, _ := NewDH(message.DHModp2048)
		if d.x.Cmp(big.NewInt(2)) < 0 || d.x.Cmp(new(big.Int).Sub(p, big.NewInt(2))) > 0 || d.x.BitLen() < 2000 {
			t.Fatalf("group 14 exponent of %d bits out of range", d.x.BitLen())
		}
	}
}
