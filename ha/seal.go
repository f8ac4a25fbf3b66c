package ha

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

// sealVersion is the first octet of every sealed record: a later format
// gets another one.
const sealVersion = 1

// aadPrefix binds a record to this use and, with the key path appended,
// to its place: a record copied to another key does not open.
const aadPrefix = "keyplane-ha-record-v1\x00"

// Sealer seals and opens records with AES-256-GCM under the cluster key.
// Layout: version (1) | nonce (12) | ciphertext and tag. Nonces are
// random: 2^32 records per key keep the collision chance negligible.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer takes the 32-byte cluster key (it keeps no copy of the
// slice: the AES key schedule is what stays).
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("ha: cluster key of %d bytes: want 32 (AES-256)", len(key))
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ha: cluster key: %w", err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, fmt.Errorf("ha: cluster key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Overhead is what sealing adds to a record.
func (s *Sealer) Overhead() int { return 1 + s.aead.NonceSize() + s.aead.Overhead() }

// Seal encrypts plain for key path.
func (s *Sealer) Seal(path string, plain []byte) []byte {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1 : 1+ns])
	return s.aead.Seal(out, out[1:1+ns], plain, aad(path))
}

// Open decrypts a record read at key path; a *SealError otherwise.
func (s *Sealer) Open(path string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	switch {
	case len(sealed) < 1+ns+s.aead.Overhead():
		return nil, &SealError{Key: path, Reason: fmt.Sprintf("%d bytes, shorter than a sealed record", len(sealed))}
	case sealed[0] != sealVersion:
		return nil, &SealError{Key: path, Reason: fmt.Sprintf("format version %d, want %d", sealed[0], sealVersion)}
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad(path))
	if err != nil {
		return nil, &SealError{Key: path, Reason: "authentication failed (tampered, another cluster key, or moved from another key)"}
	}
	return plain, nil
}

func aad(path string) []byte { return append([]byte(aadPrefix), path...) }
