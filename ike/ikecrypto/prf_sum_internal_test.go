package ikecrypto

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
)

var prfIDs = []message.PRFID{message.PRFHMACSHA1, message.PRFHMACSHA2256, message.PRFHMACSHA2384, message.PRFHMACSHA2512}

// stdHashes are the PRFs' hashes, for the crypto/hmac oracle.
var stdHashes = map[message.PRFID]func() hash.Hash{
	message.PRFHMACSHA1: sha1.New, message.PRFHMACSHA2256: sha256.New,
	message.PRFHMACSHA2384: sha512.New384, message.PRFHMACSHA2512: sha512.New,
}

// stdPRF is crypto/hmac's HMAC of key over the data, the oracle for Sum.
func stdPRF(p PRF, key []byte, data ...[]byte) []byte {
	m := hmac.New(stdHashes[p.id], key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// Sum is HMAC: against crypto/hmac for keys shorter than, as long as and
// longer than the block (hashed first), data in pieces, state reused.
func TestPRFSumMatchesHMAC(t *testing.T) {
	for _, id := range prfIDs {
		p, err := NewPRF(id)
		require.NoError(t, err)
		for _, kl := range []int{0, 1, 16, 32, 63, 64, 65, 127, 128, 129, 300} {
			key := make([]byte, kl)
			_, _ = rand.Read(key)
			a, b := make([]byte, kl%37), make([]byte, 200)
			_, _ = rand.Read(a)
			_, _ = rand.Read(b)
			for range 2 { // the second time from a pooled state
				require.Equal(t, stdPRF(p, key, a, b), p.Sum(key, a, b), "%v key of %d", id, kl)
				require.Equal(t, stdPRF(p, key), p.Sum(key), "%v key of %d, no data", id, kl)
			}
		}
	}
}

// The shared key MIC (RFC 7296 §2.15) on one pooled state is the two
// HMACs of crypto/hmac, for every PRF and secrets around the block size,
// state reused; PSKAuth allocates its output only, SignedOctets its own.
func TestPSKAuthMatchesHMAC(t *testing.T) {
	octets := make([]byte, 300)
	_, _ = rand.Read(octets)
	for _, id := range prfIDs {
		p, err := NewPRF(id)
		require.NoError(t, err)
		for _, kl := range []int{0, 3, 64, 129, 300} {
			secret := make([]byte, kl)
			_, _ = rand.Read(secret)
			want := stdPRF(p, stdPRF(p, secret, []byte("Key Pad for IKEv2")), octets)
			for range 2 {
				got, err := PSKAuth(id, secret, octets)
				require.NoError(t, err)
				require.Equal(t, want, got, "%v secret of %d", id, kl)
				ok, err := VerifyPSKAuth(id, secret, octets, want)
				require.NoError(t, err)
				require.True(t, ok)
			}
		}
	}
	secret := []byte("psk")
	if n := testing.AllocsPerRun(100, func() { _, _ = PSKAuth(message.PRFHMACSHA2256, secret, octets) }); n > 1 {
		t.Errorf("PSKAuth: %v allocations, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		_, _ = SignedOctets(message.PRFHMACSHA2256, secret, octets, octets[:32], octets[:20])
	}); n > 1 {
		t.Errorf("SignedOctets: %v allocations, want 1", n)
	}
}

// stdPlus is prf+ (RFC 7296 §2.13) over crypto/hmac, the oracle for Plus.
func stdPlus(p PRF, key, seed []byte, n int) []byte {
	out, t := []byte{}, []byte(nil)
	for i := 1; len(out) < n; i++ {
		t = stdPRF(p, key, t, seed, []byte{byte(i)})
		out = append(out, t...)
	}
	return out[:n]
}

// Plus is prf+ over crypto/hmac for every PRF, keys around the block
// size, outputs of whole and partial blocks, state reused; the output
// has no room beyond n (an IKE SA keeps it for its life).
func TestPRFPlusMatchesHMAC(t *testing.T) {
	for _, id := range prfIDs {
		p, err := NewPRF(id)
		require.NoError(t, err)
		for _, kl := range []int{0, 20, 64, 65, 128, 129, 300} {
			key, seed := make([]byte, kl), make([]byte, 64)
			_, _ = rand.Read(key)
			_, _ = rand.Read(seed)
			for _, n := range []int{0, 1, p.Size() - 1, p.Size(), p.Size() + 1, 7 * p.Size(), 255 * p.Size()} {
				for range 2 {
					got, err := p.Plus(key, seed, n)
					require.NoError(t, err)
					require.Equal(t, stdPlus(p, key, seed, n), []byte(got), "%v key of %d, %d octets", id, kl, n)
					require.Equal(t, n, cap(got), "no spare room kept with the keys")
				}
			}
		}
	}
}

// Sum and Plus allocate their output and nothing else.
func TestPRFAllocations(t *testing.T) {
	p, err := NewPRF(message.PRFHMACSHA2256)
	require.NoError(t, err)
	key, seed := make([]byte, 32), make([]byte, 64)
	p.Sum(key, seed) // fill the pool
	if n := testing.AllocsPerRun(100, func() { p.Sum(key, seed) }); n > 1 {
		t.Errorf("Sum: %v allocations, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = p.Plus(key, seed, 200) }); n > 1 {
		t.Errorf("Plus: %v allocations, want 1", n)
	}
}

// FuzzPRFSum: Sum and Plus against crypto/hmac for any key and data.
func FuzzPRFSum(f *testing.F) {
	f.Add(uint8(1), []byte("key"), []byte("data"), []byte("more"))
	f.Add(uint8(3), make([]byte, 200), []byte{}, []byte{1})
	f.Fuzz(func(t *testing.T, which uint8, key, a, b []byte) {
		p, err := NewPRF(prfIDs[int(which)%len(prfIDs)])
		require.NoError(t, err)
		require.Equal(t, stdPRF(p, key, a, b), p.Sum(key, a, b))
		n := (len(a) + 1) * len(b) % (255*p.Size() + 1)
		got, err := p.Plus(key, b, n)
		require.NoError(t, err)
		require.Equal(t, stdPlus(p, key, b, n), []byte(got))
	})
}

// BenchmarkPRFSum: one PRF (SHA-256) by Sum and by crypto/hmac.
func BenchmarkPRFSum(b *testing.B) {
	p, err := NewPRF(message.PRFHMACSHA2256)
	require.NoError(b, err)
	key, data := make([]byte, 32), make([]byte, 300)
	b.Run("impl=crypto-hmac", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = stdPRF(p, key, data)
		}
	})
	b.Run("impl=keyplane", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = p.Sum(key, data)
		}
	})
}
