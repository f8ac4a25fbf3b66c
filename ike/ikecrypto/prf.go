package ikecrypto

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/keyplane/keyplane/ike/message"
)

// ErrUnsupported is wrapped by every error about an algorithm or group this
// package does not implement.
var ErrUnsupported = errors.New("ikecrypto: unsupported algorithm")

func unsupported(kind string, id any) error {
	return fmt.Errorf("%w: %s %v", ErrUnsupported, kind, id)
}

// PRF is a negotiated pseudorandom function (RFC 7296 §2.13).
type PRF struct {
	id   message.PRFID
	size int
	// macs holds *hmacState of this hash for Sum and Plus (see Sum).
	macs *sync.Pool
}

// One pool of HMAC states per hash, shared by every PRF of it.
var (
	sha1MACs   = hmacPool(sha1.New)
	sha256MACs = hmacPool(sha256.New)
	sha384MACs = hmacPool(sha512.New384)
	sha512MACs = hmacPool(sha512.New)
)

// NewPRF returns the PRF of transform id: PRF_HMAC_SHA2_256, _384 or
// _512, or PRF_HMAC_SHA1 (RFC 2104) for legacy peers.
func NewPRF(id message.PRFID) (PRF, error) {
	switch id {
	case message.PRFHMACSHA1:
		return PRF{id, sha1.Size, sha1MACs}, nil
	case message.PRFHMACSHA2256:
		return PRF{id, sha256.Size, sha256MACs}, nil
	case message.PRFHMACSHA2384:
		return PRF{id, sha512.Size384, sha384MACs}, nil
	case message.PRFHMACSHA2512:
		return PRF{id, sha512.Size, sha512MACs}, nil
	}
	return PRF{}, unsupported("PRF", id)
}

// ID returns the transform ID.
func (p PRF) ID() message.PRFID { return p.id }

// Size is the output length and the preferred key length (the length of
// SK_d, SK_pi and SK_pr, RFC 7296 §2.14).
func (p PRF) Size() int { return p.size }

// Sum returns prf(key, data[0] | data[1] | ...): HMAC (RFC 2104) written
// out over two pooled hash states, because crypto/hmac allocates a new MAC
// (two hashes, two pads, ≈6 objects) for every key, and a handshake takes
// some seven PRFs under different keys (SKEYSEED, AUTH, its key pad,
// the signed octets' MACed IDs). Checked against crypto/hmac in the tests.
func (p PRF) Sum(key []byte, data ...[]byte) []byte {
	return p.appendSum(make([]byte, 0, p.size), key, data...)
}

// appendSum appends prf(key, data[0] | data[1] | ...) to dst.
func (p PRF) appendSum(dst, key []byte, data ...[]byte) []byte {
	st := p.macs.Get().(*hmacState)
	defer p.macs.Put(st)
	st.setKey(key)
	dst = st.mac(dst, data...)
	st.wipe()
	return dst
}

// hmacState is one hash and room for HMAC's pad (a block, at most
// SHA-512's 128 octets) and its inner hash.
type hmacState struct {
	h     hash.Hash
	pad   [128]byte
	inner [64]byte
	last  [64]byte // prf+'s last block when only part of it is wanted; the PSK's padded key
	ctr   [1]byte  // prf+'s block counter
}

func hmacPool(h func() hash.Hash) *sync.Pool {
	return &sync.Pool{New: func() any { return &hmacState{h: h()} }}
}

// setKey leaves the key's inner pad (K xor ipad) in st.pad.
func (st *hmacState) setKey(key []byte) {
	pad := st.pad[:st.h.BlockSize()]
	clear(pad)
	if len(key) > len(pad) { // RFC 2104 §2: a longer key is hashed first
		st.h.Reset()
		st.h.Write(key)
		st.h.Sum(pad[:0])
	} else {
		copy(pad, key)
	}
	for i := range pad {
		pad[i] ^= 0x36
	}
}

// mac appends HMAC(key, data...) to dst under the key setKey left; the
// inner pad is there again afterwards.
func (st *hmacState) mac(dst []byte, data ...[]byte) []byte {
	pad := st.pad[:st.h.BlockSize()]
	st.h.Reset()
	st.h.Write(pad)
	for _, d := range data {
		st.h.Write(d)
	}
	inner := st.h.Sum(st.inner[:0])
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	st.h.Reset()
	st.h.Write(pad)
	st.h.Write(inner)
	dst = st.h.Sum(dst)
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	return dst
}

// wipe clears the padded key and the hash state before st goes back to
// the pool.
func (st *hmacState) wipe() {
	clear(st.pad[:])
	clear(st.inner[:])
	clear(st.last[:])
	st.h.Reset()
}

// ErrPRFPlusTooLong is returned when prf+ is asked for more than 255 blocks.
var ErrPRFPlusTooLong = errors.New("ikecrypto: prf+ output longer than 255 blocks")

// Plus returns the first n octets of prf+(key, seed) (RFC 7296 §2.13):
// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), at most 255 blocks.
func (p PRF) Plus(key, seed []byte, n int) (Key, error) {
	if n < 0 || n > 255*p.size {
		return nil, fmt.Errorf("%w: %d octets from %v", ErrPRFPlusTooLong, n, p.id)
	}
	// out is exactly n long: an IKE SA keeps its keying material for its
	// life, and room for one more block was 32 octets of it at SHA-256.
	// Whole blocks go straight into out; a last partial one is made in
	// st.last and copied.
	out := make([]byte, 0, n)
	st := p.macs.Get().(*hmacState)
	defer p.macs.Put(st)
	st.setKey(key)
	var prev []byte
	for i := 1; len(out) < n; i++ {
		st.ctr[0] = byte(i)
		if len(out)+p.size <= n {
			start := len(out)
			out = st.mac(out, prev, seed, st.ctr[:])
			prev = out[start:]
		} else {
			out = append(out, st.mac(st.last[:0], prev, seed, st.ctr[:])[:n-len(out)]...)
		}
	}
	st.wipe()
	return Key(out), nil
}
