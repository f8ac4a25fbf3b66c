package ikecrypto

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

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
	hash func() hash.Hash
	size int
}

// NewPRF returns the PRF of transform id: PRF_HMAC_SHA2_256, _384 or
// _512, or PRF_HMAC_SHA1 (RFC 2104) for legacy peers.
func NewPRF(id message.PRFID) (PRF, error) {
	switch id {
	case message.PRFHMACSHA1:
		return PRF{id, sha1.New, sha1.Size}, nil
	case message.PRFHMACSHA2256:
		return PRF{id, sha256.New, sha256.Size}, nil
	case message.PRFHMACSHA2384:
		return PRF{id, sha512.New384, sha512.Size384}, nil
	case message.PRFHMACSHA2512:
		return PRF{id, sha512.New, sha512.Size}, nil
	}
	return PRF{}, unsupported("PRF", id)
}

// ID returns the transform ID.
func (p PRF) ID() message.PRFID { return p.id }

// Size is the output length and the preferred key length (the length of
// SK_d, SK_pi and SK_pr, RFC 7296 §2.14).
func (p PRF) Size() int { return p.size }

// Sum returns prf(key, data[0] | data[1] | ...).
func (p PRF) Sum(key []byte, data ...[]byte) []byte {
	m := hmac.New(p.hash, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// ErrPRFPlusTooLong is returned when prf+ is asked for more than 255 blocks.
var ErrPRFPlusTooLong = errors.New("ikecrypto: prf+ output longer than 255 blocks")

// Plus returns the first n octets of prf+(key, seed) (RFC 7296 §2.13):
// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), at most 255 blocks.
func (p PRF) Plus(key, seed []byte, n int) (Key, error) {
	if n < 0 || n > 255*p.size {
		return nil, fmt.Errorf("%w: %d octets from %v", ErrPRFPlusTooLong, n, p.id)
	}
	out := make([]byte, 0, n+p.size)
	m := hmac.New(p.hash, key)
	var t []byte
	for i := 1; len(out) < n; i++ {
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{byte(i)})
		t = m.Sum(t[:0])
		out = append(out, t...)
	}
	return Key(out[:n]), nil
}
