package ikecrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/keyplane/keyplane/ike/message"
)

// ErrAuthentication is returned by Open when the ICV does not verify or the
// payload is malformed. message.Message.Decrypt reports it as
// message.ErrIntegrity.
var ErrAuthentication = errors.New("ikecrypto: message authentication failed")

// NewCipher returns the Encrypted payload cipher for one direction of an
// IKE SA. The cipher is safe for concurrent use. encrKey is SK_ei or SK_er (salt included for an AEAD); integKey is
// SK_ai or SK_ar, empty for an AEAD. keyBits is the negotiated Key Length.
// The cipher starts idle (see Idle).
func NewCipher(encr message.EncrID, keyBits int, encrKey []byte, integ message.IntegID, integKey []byte) (message.Cipher, error) {
	c, err := newCipher(encr, keyBits, encrKey, integ, integKey)
	if err != nil {
		return nil, err
	}
	Idle(c)
	return c, nil
}

// newCipher is NewCipher, not idle.
func newCipher(encr message.EncrID, keyBits int, encrKey []byte, integ message.IntegID, integKey []byte) (message.Cipher, error) {
	el, il, err := keyLengths(encr, keyBits, integ)
	if err != nil {
		return nil, err
	}
	if len(encrKey) != el || len(integKey) != il {
		return nil, fmt.Errorf("ikecrypto: %v/%d-%v needs keys of %d and %d octets, got %d and %d",
			encr, keyBits, integ, el, il, len(encrKey), len(integKey))
	}
	switch encr {
	case message.EncrAESGCM16:
		key := append([]byte(nil), encrKey[:el-aeadSaltLen]...)
		g, err := newGCM(key) // the key is checked now
		if err != nil {
			return nil, err
		}
		c, err := newAEAD(g, encrKey[el-aeadSaltLen:])
		if err != nil {
			return nil, err
		}
		c.aead, c.gcmKey = nil, key
		c.gcm.Store(&builtGCM{g}) // until Idle
		return c, nil
	case message.EncrChaCha20Poly1305:
		a, err := chacha20poly1305.New(encrKey[:32])
		if err != nil {
			return nil, err
		}
		return newAEAD(a, encrKey[32:])
	case message.EncrAESCBC:
		b, err := aes.NewCipher(encrKey)
		if err != nil {
			return nil, err
		}
		ia, _ := integAlgorithm(integ)
		return &cbcHMAC{block: b, hash: ia.hash, key: append([]byte(nil), integKey...), icvLen: ia.icvLen}, nil
	}
	return nil, unsupported("encryption", encr)
}

// aeadCipher is an AEAD for the SK payload with an 8-octet explicit IV and a
// 4-octet salt (RFC 5282 for GCM, RFC 7634 for ChaCha20-Poly1305): nonce =
// salt | IV, AAD = IKE header through the end of the SK payload header.
type aeadCipher struct {
	// aead is built once for ChaCha20-Poly1305 (its state is its key).
	// AES-GCM's is built from gcmKey at each use instead: its round keys
	// and tables are some 700 octets a direction, which every idle IKE
	// SA would keep, and an established IKE SA seals or opens a few
	// messages an hour.
	aead   cipher.AEAD
	gcmKey []byte
	// gcm is AES-GCM's AEAD kept while the IKE SA's handshake runs
	// (HandshakeCiphers), so IKE_AUTH's messages do not build it again
	// (≈3 µs and 1.3 KB each); Idle drops it and leaves idleGCM, with
	// which every use builds its own and keeps none.
	gcm      atomic.Pointer[builtGCM]
	salt     [aeadSaltLen]byte
	overhead uint8 // the ICV's length (16), beside salt: 64 octets, not 72 (80 class)
	// iv is the last explicit IV used; IVs are consecutive from a random
	// start, so they never repeat under one key (RFC 5282 §3.1).
	iv atomic.Uint64
}

const aeadIVLen = 8

func newAEAD(a cipher.AEAD, salt []byte) (*aeadCipher, error) {
	if a.NonceSize() != aeadSaltLen+aeadIVLen {
		return nil, fmt.Errorf("ikecrypto: AEAD nonce of %d octets", a.NonceSize())
	}
	if a.Overhead() > 255 {
		return nil, fmt.Errorf("ikecrypto: AEAD overhead of %d octets", a.Overhead())
	}
	c := &aeadCipher{aead: a, overhead: uint8(a.Overhead())}
	copy(c.salt[:], salt)
	var start [8]byte
	if _, err := rand.Read(start[:]); err != nil {
		return nil, err
	}
	// Leave room below 2^64 so the counter does not wrap in practice.
	c.iv.Store(binary.BigEndian.Uint64(start[:]) >> 1)
	return c, nil
}

func (c *aeadCipher) IVSize() int    { return aeadIVLen }
func (c *aeadCipher) BlockSize() int { return 1 }
func (c *aeadCipher) ICVSize() int   { return int(c.overhead) }
func (c *aeadCipher) String() string { return "AEAD cipher (key redacted)" }

func (c *aeadCipher) Seal(dst, head, plaintext []byte) ([]byte, error) {
	var nonce [aeadSaltLen + aeadIVLen]byte
	copy(nonce[:], c.salt[:])
	binary.BigEndian.PutUint64(nonce[aeadSaltLen:], c.iv.Add(1))
	// dst may be head itself (see message.Cipher); crypto/cipher wants the
	// AAD apart from the output, and head is only a few dozen octets.
	aad := append([]byte(nil), head...)
	a, err := c.get()
	if err != nil {
		return nil, err
	}
	dst = append(dst, nonce[aeadSaltLen:]...)
	return a.Seal(dst, nonce[:], plaintext, aad), nil
}

type builtGCM struct{ cipher.AEAD }

// idleGCM marks an idle cipher's gcm (one pointer instead of a flag
// beside it: there are two ciphers per IKE SA).
var idleGCM = &builtGCM{}

// get is the AEAD: ChaCha20-Poly1305's, AES-GCM's kept one, or AES-GCM's
// built now (and kept unless idle).
func (c *aeadCipher) get() (cipher.AEAD, error) {
	if c.aead != nil {
		return c.aead, nil
	}
	p := c.gcm.Load()
	if p != nil && p != idleGCM {
		return p.AEAD, nil
	}
	g, err := newGCM(c.gcmKey)
	if err == nil && p == nil {
		c.gcm.CompareAndSwap(nil, &builtGCM{g}) // not if Idle ran meanwhile
	}
	return g, err
}

// Idle lets c go of what it keeps only to be quick (AES-GCM's AEAD, some
// 1.3 KB a direction) once its IKE SA has finished its handshake: an
// established IKE SA seals or opens a few messages an hour, each then
// builds its AEAD. Ciphers of other kinds are left as they are.
func Idle(c message.Cipher) {
	if a, ok := c.(*aeadCipher); ok {
		a.gcm.Store(idleGCM)
	}
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (c *aeadCipher) Open(dst, head, body []byte) ([]byte, error) {
	if len(body) < aeadIVLen+int(c.overhead) {
		return nil, ErrAuthentication
	}
	a, err := c.get()
	if err != nil {
		return nil, err
	}
	var nonce [aeadSaltLen + aeadIVLen]byte
	copy(nonce[:], c.salt[:])
	copy(nonce[aeadSaltLen:], body[:aeadIVLen])
	out, err := a.Open(dst, nonce[:], body[aeadIVLen:], head)
	if err != nil {
		return nil, ErrAuthentication
	}
	return out, nil
}

// cbcHMAC is AES-CBC with a random 16-octet IV and an HMAC-SHA2 ICV over
// the whole message up to the ICV (RFC 7296 §3.14, RFC 4868).
type cbcHMAC struct {
	block  cipher.Block
	hash   func() hash.Hash
	key    Key
	icvLen int
}

func (c *cbcHMAC) IVSize() int    { return aes.BlockSize }
func (c *cbcHMAC) BlockSize() int { return aes.BlockSize }
func (c *cbcHMAC) ICVSize() int   { return c.icvLen }
func (c *cbcHMAC) String() string { return "AES-CBC+HMAC cipher (keys redacted)" }

func (c *cbcHMAC) Seal(dst, head, plaintext []byte) ([]byte, error) {
	// An SK payload always holds at least the Pad Length octet, so at least
	// one block; Open refuses less, and Seal must not produce it.
	if len(plaintext) == 0 || len(plaintext)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("ikecrypto: CBC plaintext of %d octets is not padded to whole blocks", len(plaintext))
	}
	var iv [aes.BlockSize]byte
	if _, err := rand.Read(iv[:]); err != nil {
		return nil, err
	}
	// The ICV covers head | IV | ciphertext; compute it before dst grows,
	// since dst may share memory with head.
	mac := hmac.New(c.hash, c.key)
	mac.Write(head)
	mac.Write(iv[:])
	start := len(dst)
	dst = append(dst, iv[:]...)
	dst = append(dst, plaintext...)
	ct := dst[start+aes.BlockSize:]
	cipher.NewCBCEncrypter(c.block, iv[:]).CryptBlocks(ct, ct)
	mac.Write(ct)
	return mac.Sum(dst)[:len(dst)+c.icvLen], nil
}

func (c *cbcHMAC) Open(dst, head, body []byte) ([]byte, error) {
	n := len(body) - aes.BlockSize - c.icvLen
	if n <= 0 || n%aes.BlockSize != 0 {
		return nil, ErrAuthentication
	}
	mac := hmac.New(c.hash, c.key)
	mac.Write(head)
	mac.Write(body[:len(body)-c.icvLen])
	sum := mac.Sum(nil)
	if !hmac.Equal(sum[:c.icvLen], body[len(body)-c.icvLen:]) {
		return nil, ErrAuthentication
	}
	start := len(dst)
	dst = append(dst, body[aes.BlockSize:aes.BlockSize+n]...)
	pt := dst[start:]
	cipher.NewCBCDecrypter(c.block, body[:aes.BlockSize]).CryptBlocks(pt, pt)
	return dst, nil
}
