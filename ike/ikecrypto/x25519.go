package ikecrypto

import (
	"crypto/rand"
	"crypto/subtle"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// X25519 (RFC 7748), group 31 (RFC 8031), done here rather than through
// crypto/ecdh for one reason: crypto/ecdh computes a new key's public value
// with the general Montgomery ladder, ≈52 µs here, the same as the shared
// secret; the base point's multiple through edwards25519's precomputed
// tables, mapped to the Montgomery u-coordinate, is ≈20 µs. A responder
// makes one key and one secret per handshake, so this is ≈10 % of its CPU
// per handshake. The shared secret is RFC 7748's ladder over the same
// field arithmetic (constant time: no branch or index on secret bits).

const x25519Len = 32

// x25519Key is a private scalar and its public value.
type x25519Key struct {
	priv, pub [x25519Len]byte
}

// newX25519Key draws a private scalar from crypto/rand.
func newX25519Key() (*x25519Key, error) {
	var k [x25519Len]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, err
	}
	return x25519KeyFrom(k[:]), nil
}

// x25519KeyFrom makes the key of a 32-octet scalar (clamped as RFC 7748
// §5 says, here and in x25519).
func x25519KeyFrom(k []byte) *x25519Key {
	key := &x25519Key{}
	copy(key.priv[:], k)
	// X25519(k, 9) is the u-coordinate of k·B on the Montgomery curve,
	// B the base point of the birationally equivalent Edwards curve;
	// SetBytesWithClamping clamps k as RFC 7748 does, and reduces it
	// modulo the group order, which B's multiples do not see.
	s, err := edwards25519.NewScalar().SetBytesWithClamping(key.priv[:])
	if err != nil {
		panic("ikecrypto: 32-octet X25519 scalar refused: " + err.Error()) // only for a length other than 32
	}
	copy(key.pub[:], new(edwards25519.Point).ScalarBaseMult(s).BytesMontgomery())
	return key
}

// a24 is (486662 - 2) / 4 (RFC 7748 §5, for curve25519).
const a24 = 121665

// x25519 sets out to X25519(scalar, u) (RFC 7748 §5) and reports whether
// it is not all zeros (RFC 8031 §2 and RFC 7748 §6.1: a low-order u gives
// zeros, which the caller must refuse).
func x25519(out *[x25519Len]byte, scalar, u *[x25519Len]byte) bool {
	k := *scalar
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64

	// SetBytes ignores u's top bit, as RFC 7748 asks, and accepts
	// non-canonical values.
	var x1, x2, z2, x3, z3 field.Element
	if _, err := x1.SetBytes(u[:]); err != nil {
		panic("ikecrypto: 32-octet u-coordinate refused: " + err.Error())
	}
	x2.One()
	z2.Zero()
	x3.Set(&x1)
	z3.One()

	var a, aa, b, bb, e, c, d, da, cb, t field.Element
	swap := 0
	for i := 254; i >= 0; i-- {
		bit := int(k[i>>3]>>(i&7)) & 1
		swap ^= bit
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = bit

		a.Add(&x2, &z2)
		aa.Square(&a)
		b.Subtract(&x2, &z2)
		bb.Square(&b)
		e.Subtract(&aa, &bb)
		c.Add(&x3, &z3)
		d.Subtract(&x3, &z3)
		da.Multiply(&d, &a)
		cb.Multiply(&c, &b)

		x3.Add(&da, &cb)
		x3.Square(&x3)
		z3.Subtract(&da, &cb)
		z3.Square(&z3)
		z3.Multiply(&z3, &x1)
		x2.Multiply(&aa, &bb)
		t.Mult32(&e, a24)
		t.Add(&t, &aa)
		z2.Multiply(&e, &t)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)

	z2.Invert(&z2) // z2^(p-2); zero stays zero, so the result is zero
	x2.Multiply(&x2, &z2)
	copy(out[:], x2.Bytes())
	var zero [x25519Len]byte
	return subtle.ConstantTimeCompare(out[:], zero[:]) == 0
}
