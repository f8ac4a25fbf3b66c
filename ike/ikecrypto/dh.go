package ikecrypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"

	"github.com/keyplane/keyplane/ike/message"
)

// ErrInvalidPublicValue is wrapped by every *PublicValueError.
var ErrInvalidPublicValue = errors.New("ikecrypto: invalid key exchange public value")

// PublicValueError reports a peer's KE data that is not a valid public value
// of the group. The engine answers a malformed KE in a request with
// INVALID_SYNTAX (RFC 7296 §3.4 asks for a correct length; RFC 5903 and
// RFC 8031 for points that are valid and give a non-zero secret).
type PublicValueError struct {
	Group  message.DHGroup
	Reason string
}

func (e *PublicValueError) Error() string {
	return fmt.Sprintf("ikecrypto: invalid %v public value: %s", e.Group, e.Reason)
}

func (e *PublicValueError) Unwrap() error { return ErrInvalidPublicValue }

// The MODP groups of RFC 3526, generator 2. Their primes are safe primes
// (p = 2q+1, q prime), so the only small subgroups are {1} and {1, p-1},
// which the public value check (1 < y < p-1) excludes.
var (
	modp2048P = mustHex("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1" +
		"29024E088A67CC74020BBEA63B139B22514A08798E3404DD" +
		"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245" +
		"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D" +
		"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F" +
		"83655D23DCA3AD961C62F356208552BB9ED529077096966D" +
		"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
		"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9" +
		"DE2BCBF6955817183995497CEA956AE515D2261898FA0510" +
		"15728E5A8AACAA68FFFFFFFFFFFFFFFF")
	// modp3072P and modp4096P share the first 2944 bits with each other
	// (RFC 3526 §4, §5).
	modp3072P = mustHex(modpCommon + "A93AD2CAFFFFFFFFFFFFFFFF")
	modp4096P = mustHex(modpCommon +
		"A92108011A723C12A787E6D7" +
		"88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA" +
		"2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6" +
		"287C59474E6BC05D99B2964FA090C3A2233BA186515BE7ED" +
		"1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9" +
		"93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199" +
		"FFFFFFFFFFFFFFFF")
)

const modpCommon = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1" +
	"29024E088A67CC74020BBEA63B139B22514A08798E3404DD" +
	"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245" +
	"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
	"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D" +
	"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F" +
	"83655D23DCA3AD961C62F356208552BB9ED529077096966D" +
	"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
	"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9" +
	"DE2BCBF6955817183995497CEA956AE515D2261898FA0510" +
	"15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64" +
	"ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7" +
	"ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6B" +
	"F12FFA06D98A0864D87602733EC86A64521F2B18177B200C" +
	"BBE117577A615D6C770988C0BAD946E208E24FA074E5AB31" +
	"43DB5BFCE0FD108E4B82D120"

func mustHex(s string) *big.Int {
	p, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("ikecrypto: bad MODP prime")
	}
	return p
}

// modpGroup is a MODP group of RFC 3526. expBits is the private exponent
// size: 0 for group 14, whose exponents are uniform in [2, p-2] as they
// always were here; for groups 15 and 16 the "Strength Estimate 2"
// exponent sizes of RFC 3526 §8 (420 and 480 bits, twice the estimated
// strength), which cost a fraction of a full-size exponent.
type modpGroup struct {
	p       *big.Int
	size    int
	expBits int
}

var modpGroups = map[message.DHGroup]modpGroup{
	message.DHModp2048: {modp2048P, 256, 0},
	message.DHModp3072: {modp3072P, 384, 420},
	message.DHModp4096: {modp4096P, 512, 480},
}

// ecGroup is an elliptic curve group: the ECP groups of RFC 5903 (KE data
// x | y without the SEC 1 0x04 prefix, RFC 5903 §7) or Curve25519 (RFC 8031).
type ecGroup struct {
	curve ecdh.Curve
	size  int // KE data octets
	ecp   bool
}

var ecGroups = map[message.DHGroup]ecGroup{
	message.DHCurve25519: {ecdh.X25519(), 32, false},
	message.DHECP256:     {ecdh.P256(), 64, true},
	message.DHECP384:     {ecdh.P384(), 96, true},
	message.DHECP521:     {ecdh.P521(), 132, true},
}

// SupportedGroup reports whether g is a Diffie-Hellman group NewDH
// implements: 14, 15, 16 (MODP), 19, 20, 21 (ECP) and 31 (Curve25519).
// Key encapsulation methods are not groups; see SupportedKE.
func SupportedGroup(g message.DHGroup) bool {
	return PublicValueLen(g) > 0
}

// PublicValueLen is the length of the KE data of group g (RFC 7296 §3.4,
// RFC 5903 §7, RFC 8031 §3), or 0 for a method that is not a supported
// Diffie-Hellman group.
func PublicValueLen(g message.DHGroup) int {
	if m, ok := modpGroups[g]; ok {
		return m.size
	}
	if e, ok := ecGroups[g]; ok {
		return e.size
	}
	return 0
}

// DH is one side's ephemeral Diffie-Hellman state. Its String redacts. It
// is a KeyExchange: both sides send their public value, in either order.
type DH struct {
	group message.DHGroup
	x255  *x25519Key // group 31 (x25519.go)
	ec    *ecdh.PrivateKey
	x     *big.Int // MODP private exponent
	pub   []byte
}

// NewDH generates a fresh private key of group g from crypto/rand.
func NewDH(g message.DHGroup) (*DH, error) {
	if g == message.DHCurve25519 {
		k, err := newX25519Key()
		if err != nil {
			return nil, err
		}
		return &DH{group: g, x255: k, pub: k.pub[:]}, nil
	}
	if e, ok := ecGroups[g]; ok {
		k, err := e.curve.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return newECDH(g, k), nil
	}
	if m, ok := modpGroups[g]; ok {
		x, err := m.randomExponent()
		if err != nil {
			return nil, err
		}
		return newMODP(g, m, x), nil
	}
	return nil, unsupported("key exchange", g)
}

func (m modpGroup) randomExponent() (*big.Int, error) {
	if m.expBits == 0 {
		// x uniform in [2, p-2].
		x, err := rand.Int(rand.Reader, new(big.Int).Sub(m.p, big.NewInt(3)))
		if err != nil {
			return nil, err
		}
		return x.Add(x, big.NewInt(2)), nil
	}
	// expBits random bits under a fixed top bit: every exponent has the
	// same length, so math/big's exponentiation does not vary with it.
	x, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(m.expBits)))
	if err != nil {
		return nil, err
	}
	return x.SetBit(x, m.expBits, 1), nil
}

// NewDHFromPrivate builds the state from a known private key: the scalar
// for the elliptic curve groups (32, 32, 48 and 66 octets for groups 31,
// 19, 20 and 21), the big-endian exponent (1 < x < p) for the MODP groups.
// It is for known-answer tests; use NewDH otherwise.
func NewDHFromPrivate(g message.DHGroup, priv []byte) (*DH, error) {
	if g == message.DHCurve25519 {
		if len(priv) != x25519Len {
			return nil, fmt.Errorf("ikecrypto: X25519 private key of %d octets, need %d", len(priv), x25519Len)
		}
		k := x25519KeyFrom(priv)
		return &DH{group: g, x255: k, pub: k.pub[:]}, nil
	}
	if e, ok := ecGroups[g]; ok {
		k, err := e.curve.NewPrivateKey(priv)
		if err != nil {
			return nil, err
		}
		return newECDH(g, k), nil
	}
	if m, ok := modpGroups[g]; ok {
		x := new(big.Int).SetBytes(priv)
		if x.Cmp(big.NewInt(1)) <= 0 || x.Cmp(m.p) >= 0 {
			return nil, errors.New("ikecrypto: MODP private exponent out of range")
		}
		return newMODP(g, m, x), nil
	}
	return nil, unsupported("key exchange", g)
}

func newECDH(g message.DHGroup, k *ecdh.PrivateKey) *DH {
	pub := k.PublicKey().Bytes()
	if ecGroups[g].ecp {
		pub = pub[1:] // RFC 5903 §7: x | y, without the 0x04 prefix
	}
	return &DH{group: g, ec: k, pub: pub}
}

func newMODP(g message.DHGroup, m modpGroup, x *big.Int) *DH {
	y := new(big.Int).Exp(big.NewInt(2), x, m.p)
	return &DH{group: g, x: x, pub: y.FillBytes(make([]byte, m.size))}
}

// Group returns the key exchange method.
func (d *DH) Group() message.DHGroup { return d.group }

// Method returns the key exchange method (KeyExchange).
func (d *DH) Method() message.DHGroup { return d.group }

// PublicValue returns the KE payload data.
func (d *DH) PublicValue() []byte { return append([]byte(nil), d.pub...) }

func (d *DH) String() string { return fmt.Sprintf("DH(%v, private key redacted)", d.group) }

// SharedSecret validates the peer's KE data and returns g^ir: the x
// coordinate for the ECP groups (RFC 5903 §7), the X25519 output (RFC
// 8031), or the MODP value padded to the prime's length (RFC 7296 §2.14).
// An invalid public value is a *PublicValueError.
func (d *DH) SharedSecret(peer []byte) (Key, error) {
	if err := CheckPublicValue(d.group, peer); err != nil {
		return nil, err
	}
	if d.x255 != nil {
		var u [x25519Len]byte
		copy(u[:], peer) // CheckPublicValue checked the length
		s := make(Key, x25519Len)
		if !x25519((*[x25519Len]byte)(s), &d.x255.priv, &u) {
			return nil, &PublicValueError{Group: d.group, Reason: "low-order point: the shared secret is all zeros"}
		}
		return s, nil
	}
	if d.ec != nil {
		pk, err := parseECPublic(d.group, peer)
		if err != nil {
			return nil, err
		}
		s, err := d.ec.ECDH(pk)
		if err != nil {
			// X25519 with a low-order point: the result is all zeros,
			// which RFC 8031 §2 says to reject.
			return nil, &PublicValueError{Group: d.group, Reason: err.Error()}
		}
		return Key(s), nil
	}
	m := modpGroups[d.group]
	y := new(big.Int).SetBytes(peer)
	s := new(big.Int).Exp(y, d.x, m.p)
	return Key(s.FillBytes(make([]byte, m.size))), nil
}

func parseECPublic(g message.DHGroup, peer []byte) (*ecdh.PublicKey, error) {
	e := ecGroups[g]
	b := peer
	if e.ecp {
		b = append([]byte{4}, peer...)
	}
	pk, err := e.curve.NewPublicKey(b)
	if err != nil {
		return nil, &PublicValueError{Group: g, Reason: err.Error()}
	}
	return pk, nil
}

// CheckPublicValue validates a peer's KE data for group g without a private
// key: the length, and for the ECP groups that the point is on the curve
// (RFC 5903 §7 gives x | y), for the MODP groups that 1 < y < p-1. X25519
// points are checked when the secret is computed (the all-zero result,
// RFC 8031 §2).
func CheckPublicValue(g message.DHGroup, peer []byte) error {
	want := PublicValueLen(g)
	if want == 0 {
		return unsupported("key exchange", g)
	}
	if len(peer) != want {
		return &PublicValueError{Group: g, Reason: fmt.Sprintf("%d octets, need %d", len(peer), want)}
	}
	if e, ok := ecGroups[g]; ok {
		if !e.ecp { // X25519: any 32 octets are a u-coordinate (crypto/ecdh checks only the length, done above)
			return nil
		}
		_, err := parseECPublic(g, peer)
		return err
	}
	p := modpGroups[g].p
	y := new(big.Int).SetBytes(peer)
	pm1 := new(big.Int).Sub(p, big.NewInt(1))
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(pm1) >= 0 {
		return &PublicValueError{Group: g, Reason: "value not in (1, p-1)"}
	}
	return nil
}
