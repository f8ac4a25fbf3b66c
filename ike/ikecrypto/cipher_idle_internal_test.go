package ikecrypto

import (
	"bytes"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
)

// AES-GCM keeps its AEAD from a handshake's ciphers until Idle, and an idle
// cipher builds one per message and keeps none; both interoperate.
func TestCipherIdleKeepsNoAEAD(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 16+aeadSaltLen)
	busy, err := newCipher(message.EncrAESGCM16, 128, key, 0, nil)
	require.NoError(t, err)
	idle, err := NewCipher(message.EncrAESGCM16, 128, key, 0, nil)
	require.NoError(t, err)
	b, i := busy.(*aeadCipher), idle.(*aeadCipher)
	require.NotContains(t, []*builtGCM{nil, idleGCM}, b.gcm.Load(), "a handshake's cipher keeps the AEAD built to check its key")
	require.Same(t, idleGCM, i.gcm.Load(), "NewCipher's cipher starts idle")

	head := []byte("IKE header and SK payload header")
	plain := []byte("inner payloads\x00")
	roundTrip := func(from, to message.Cipher) {
		t.Helper()
		sealed, err := from.Seal(nil, head, plain)
		require.NoError(t, err)
		opened, err := to.Open(nil, head, sealed)
		require.NoError(t, err)
		require.Equal(t, plain, opened)
	}
	roundTrip(busy, idle)
	roundTrip(idle, busy)
	require.Same(t, idleGCM, i.gcm.Load(), "an idle cipher keeps no AEAD after Seal or Open")

	// Kept, a message builds nothing: fewer allocations than idle.
	seal := func(c message.Cipher) func() {
		return func() { _, _ = c.Seal(nil, head, plain) }
	}
	kept, built := testing.AllocsPerRun(50, seal(busy)), testing.AllocsPerRun(50, seal(idle))
	require.Less(t, kept, built, "Seal with the AEAD kept allocates %v, building it %v", kept, built)

	Idle(busy)
	require.Same(t, idleGCM, b.gcm.Load(), "Idle drops the AEAD")
	roundTrip(busy, idle)
	roundTrip(idle, busy)
	require.Same(t, idleGCM, b.gcm.Load(), "after Idle nothing is kept again")

	// ChaCha20-Poly1305's AEAD is its key: Idle leaves it.
	cc, err := NewCipher(message.EncrChaCha20Poly1305, 256, bytes.Repeat([]byte{9}, 32+aeadSaltLen), 0, nil)
	require.NoError(t, err)
	roundTrip(cc, cc)
}

// Idle while other goroutines seal and open (the race detector's case).
func TestCipherIdleConcurrent(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 16+aeadSaltLen)
	c, err := newCipher(message.EncrAESGCM16, 128, key, 0, nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				sealed, err := c.Seal(nil, []byte("h"), []byte("p"))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := c.Open(nil, []byte("h"), sealed); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	Idle(c)
	wg.Wait()
	require.Same(t, idleGCM, c.(*aeadCipher).gcm.Load())
}

// TestAEADCipherSize: an IKE SA's AEAD cipher (two per SA, kept while it
// lives) fits the 64-octet size class.
func TestAEADCipherSize(t *testing.T) {
	if n := unsafe.Sizeof(aeadCipher{}); n > 64 {
		t.Errorf("aeadCipher is %d octets, over the 64-octet size class", n)
	}
}
