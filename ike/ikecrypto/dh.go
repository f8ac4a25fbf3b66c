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

// modp2048P is the 2048-bit MODP group prime of RFC 3526 §3 (group 14),
// generator 2.
var modp2048P, _ = new(big.Int).SetString(
	"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"+
		"29024E088A67CC74020BBEA63B139B22514A08798E3404DD"+
		"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"+
		"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"+
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"+
		"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"+
		"83655D23DCA3AD961C62F356208552BB9ED529077096966D"+
		"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"+
		"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"+
		"DE2BCBF6955817183995497CEA956AE515D2261898FA0510"+
		"15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)

const modp2048Len = 256

// SupportedGroup reports whether g is implemented: 14, 19 and 31.
func SupportedGroup(g message.DHGroup) bool {
	return PublicValueLen(g) > 0
}

// PublicValueLen is the length of the KE data of group g (RFC 7296 §3.4,
// RFC 5903 §7, RFC 8031 §3), or 0 for an unsupported group.
func PublicValueLen(g message.DHGroup) int {
	switch g {
	case message.DHModp2048:
		return modp2048Len
	case message.DHECP256:
		return 64
	case message.DHCurve25519:
		return 32
	}
	return 0
}

// DH is one side's ephemeral key exchange state. Its String redacts.
type DH struct {
	group message.DHGroup
	ec    *ecdh.PrivateKey
	x     *big.Int // MODP private exponent
	pub   []byte
}

// NewDH generates a fresh private key of group g from crypto/rand.
func NewDH(g message.DHGroup) (*DH, error) {
	switch g {
	case message.DHCurve25519:
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return newECDH(g, k), nil
	case message.DHECP256:
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return newECDH(g, k), nil
	case message.DHModp2048:
		// x uniform in [2, p-2].
		x, err := rand.Int(rand.Reader, new(big.Int).Sub(modp2048P, big.NewInt(3)))
		if err != nil {
			return nil, err
		}
		return newMODP(x.Add(x, big.NewInt(2))), nil
	}
	return nil, unsupported("key exchange", g)
}

// NewDHFromPrivate builds the state from a known private key: the 32-octet
// scalar for groups 31 and 19, the big-endian exponent for group 14. It is
// for known-answer tests; use NewDH otherwise.
func NewDHFromPrivate(g message.DHGroup, priv []byte) (*DH, error) {
	switch g {
	case message.DHCurve25519, message.DHECP256:
		c := ecdh.X25519()
		if g == message.DHECP256 {
			c = ecdh.P256()
		}
		k, err := c.NewPrivateKey(priv)
		if err != nil {
			return nil, err
		}
		return newECDH(g, k), nil
	case message.DHModp2048:
		x := new(big.Int).SetBytes(priv)
		if x.Cmp(big.NewInt(1)) <= 0 || x.Cmp(modp2048P) >= 0 {
			return nil, errors.New("ikecrypto: MODP private exponent out of range")
		}
		return newMODP(x), nil
	}
	return nil, unsupported("key exchange", g)
}

func newECDH(g message.DHGroup, k *ecdh.PrivateKey) *DH {
	pub := k.PublicKey().Bytes()
	if g == message.DHECP256 {
		pub = pub[1:] // RFC 5903 §7: x | y, without the 0x04 prefix
	}
	return &DH{group: g, ec: k, pub: pub}
}

func newMODP(x *big.Int) *DH {
	y := new(big.Int).Exp(big.NewInt(2), x, modp2048P)
	return &DH{group: message.DHModp2048, x: x, pub: y.FillBytes(make([]byte, modp2048Len))}
}

// Group returns the key exchange method.
func (d *DH) Group() message.DHGroup { return d.group }

// PublicValue returns the KE payload data.
func (d *DH) PublicValue() []byte { return append([]byte(nil), d.pub...) }

func (d *DH) String() string { return fmt.Sprintf("DH(%v, private key redacted)", d.group) }

// SharedSecret validates the peer's KE data and returns g^ir: the x
// coordinate for ECP-256 (RFC 5903 §7), the X25519 output (RFC 8031), or the
// MODP value padded to 256 octets (RFC 7296 §2.14). An invalid public value
// is a *PublicValueError.
func (d *DH) SharedSecret(peer []byte) (Key, error) {
	if err := CheckPublicValue(d.group, peer); err != nil {
		return nil, err
	}
	switch d.group {
	case message.DHCurve25519, message.DHECP256:
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
	case message.DHModp2048:
		y := new(big.Int).SetBytes(peer)
		s := new(big.Int).Exp(y, d.x, modp2048P)
		return Key(s.FillBytes(make([]byte, modp2048Len))), nil
	}
	return nil, unsupported("key exchange", d.group)
}

func parseECPublic(g message.DHGroup, peer []byte) (*ecdh.PublicKey, error) {
	var pk *ecdh.PublicKey
	var err error
	if g == message.DHECP256 {
		pk, err = ecdh.P256().NewPublicKey(append([]byte{4}, peer...))
	} else {
		pk, err = ecdh.X25519().NewPublicKey(peer)
	}
	if err != nil {
		return nil, &PublicValueError{Group: g, Reason: err.Error()}
	}
	return pk, nil
}

// CheckPublicValue validates a peer's KE data for group g without a private
// key: the length, and for ECP-256 that the point is on the curve (RFC 5903
// §7 gives x | y), for MODP-2048 that 1 < y < p-1. X25519 points are
// checked when the secret is computed (the all-zero result, RFC 8031 §2).
func CheckPublicValue(g message.DHGroup, peer []byte) error {
	want := PublicValueLen(g)
	if want == 0 {
		return unsupported("key exchange", g)
	}
	if len(peer) != want {
		return &PublicValueError{Group: g, Reason: fmt.Sprintf("%d octets, need %d", len(peer), want)}
	}
	switch g {
	case message.DHECP256, message.DHCurve25519:
		_, err := parseECPublic(g, peer)
		return err
	case message.DHModp2048:
		y := new(big.Int).SetBytes(peer)
		pm1 := new(big.Int).Sub(modp2048P, big.NewInt(1))
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(pm1) >= 0 {
			return &PublicValueError{Group: g, Reason: "value not in (1, p-1)"}
		}
	}
	return nil
}
