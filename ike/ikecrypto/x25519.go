package ikecrypto

import (
	"crypto/rand"
	"crypto/subtle"
	"sync"

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

// newX25519Key returns a key of a private scalar from crypto/rand: a
// spare from the last batch, or the first of a new batch (x25519Keys).
func newX25519Key() (*x25519Key, error) {
	sp := &x25519Spares
	sp.mu.Lock()
	if n := len(sp.keys); n > 0 {
		k := sp.keys[n-1]
		sp.keys[n-1] = nil
		sp.keys = sp.keys[:n-1]
		sp.mu.Unlock()
		return k, nil
	}
	sp.mu.Unlock()
	var seed [x25519Batch * x25519Len]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	keys := x25519Keys(seed[:])
	sp.mu.Lock()
	if len(sp.keys) < maxX25519Spares { // goroutines that refilled at once
		sp.keys = append(sp.keys, keys[1:]...)
	}
	sp.mu.Unlock()
	return keys[0], nil
}

// x25519Batch keys are made at once: each public value needs one field
// inversion (mapping the Edwards point to its Montgomery u), about a third
// of the rest of its cost, and a batch shares one (x25519Keys). A key
// waits among the spares until a handshake takes it; each is used once.
const (
	x25519Batch     = 8
	maxX25519Spares = 4 * x25519Batch
)

var x25519Spares struct {
	mu   sync.Mutex
	keys []*x25519Key
}

// x25519Keys makes the keys of the 32-octet scalars in seed (a multiple
// of 32 octets), as x25519KeyFrom does one by one, with one inversion for
// all: Montgomery's trick, 1/d_i = (d_1···d_(i-1)) · (d_1···d_n)^-1 ·
// (d_(i+1)···d_n), folded from the last. Each key is its own allocation,
// so that a kept one does not keep the others.
func x25519Keys(seed []byte) []*x25519Key {
	n := len(seed) / x25519Len
	keys := make([]*x25519Key, n)
	num := make([]field.Element, n)    // Z + Y
	den := make([]field.Element, n)    // Z - Y, never zero: see below
	prefix := make([]field.Element, n) // den[0]···den[i]
	var p edwards25519.Point
	for i := range keys {
		k := &x25519Key{}
		copy(k.priv[:], seed[i*x25519Len:])
		s, err := edwards25519.NewScalar().SetBytesWithClamping(k.priv[:])
		if err != nil {
			panic("ikecrypto: 32-octet X25519 scalar refused: " + err.Error())
		}
		_, y, z, _ := p.ScalarBaseMult(s).ExtendedCoordinates()
		num[i].Add(z, y)
		// Z = Y only for y = 1, the identity: the multiple of a clamped
		// scalar (8·j, 2^251 ≤ j < 2^252, prime to the group order) is not.
		den[i].Subtract(z, y)
		if i == 0 {
			prefix[i].Set(&den[i])
		} else {
			prefix[i].Multiply(&prefix[i-1], &den[i])
		}
		keys[i] = k
	}
	var inv, di, u field.Element
	inv.Invert(&prefix[n-1]) // 1 / (den[0]···den[n-1])
	for i := n - 1; i >= 0; i-- {
		if i > 0 {
			di.Multiply(&inv, &prefix[i-1]) // 1 / den[i]
			inv.Multiply(&inv, &den[i])     // 1 / (den[0]···den[i-1])
		} else {
			di.Set(&inv)
		}
		u.Multiply(&num[i], &di)
		copy(keys[i].pub[:], u.Bytes())
	}
	return keys
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
