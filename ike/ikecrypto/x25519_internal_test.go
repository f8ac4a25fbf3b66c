package ikecrypto

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// stdX25519 is crypto/ecdh's X25519(k, u), the oracle for x25519.go; ok is
// false where crypto/ecdh refuses the all-zero result.
func stdX25519(t testing.TB, k, u []byte) (out []byte, ok bool) {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(k)
	require.NoError(t, err)
	pub, err := ecdh.X25519().NewPublicKey(u)
	require.NoError(t, err)
	s, err := priv.ECDH(pub)
	return s, err == nil
}

// Public values and secrets agree with crypto/ecdh for random scalars and
// random u (top bit set or not, some non-canonical: ≥ 2^255-19).
func TestX25519MatchesECDH(t *testing.T) {
	for i := range 500 {
		k, u := make([]byte, 32), make([]byte, 32)
		_, _ = rand.Read(k)
		_, _ = rand.Read(u)
		if i%50 == 0 { // 2^255-19+j, non-canonical
			copy(u, bytes.Repeat([]byte{0xff}, 32))
			u[0] = 0xed + byte(i/50)%18
			u[31] = 0x7f
		}
		key := x25519KeyFrom(k)
		std, err := ecdh.X25519().NewPrivateKey(k)
		require.NoError(t, err)
		require.Equal(t, std.PublicKey().Bytes(), key.pub[:], "public value of %x", k)

		var out [32]byte
		ok := x25519(&out, &key.priv, (*[32]byte)(u))
		want, wantOK := stdX25519(t, k, u)
		require.Equal(t, wantOK, ok, "k %x u %x", k, u)
		if ok {
			require.Equal(t, want, out[:], "k %x u %x", k, u)
		}
	}
}

// A batch's keys, one inversion for all, are the keys made one by one,
// for every batch length up to two batches and for crafted scalars (all
// zeros, all ones).
func TestX25519KeysMatchSingle(t *testing.T) {
	for n := 1; n <= 2*x25519Batch; n++ {
		seed := make([]byte, n*x25519Len)
		_, _ = rand.Read(seed)
		if n == 3 {
			clear(seed[:x25519Len])
			for i := range x25519Len {
				seed[x25519Len+i] = 0xff
			}
		}
		keys := x25519Keys(seed)
		require.Len(t, keys, n)
		for i, k := range keys {
			one := x25519KeyFrom(seed[i*x25519Len : (i+1)*x25519Len])
			require.Equal(t, one.priv, k.priv, "batch of %d, key %d", n, i)
			require.Equal(t, one.pub, k.pub, "batch of %d, key %d: public value", n, i)
		}
	}
}

// newX25519Key from many goroutines: every key different and right, and
// the spares stay bounded.
func TestNewX25519KeySpares(t *testing.T) {
	var mu sync.Mutex
	seen := map[[x25519Len]byte]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 3 * x25519Batch {
				k, err := newX25519Key()
				if err != nil {
					t.Error(err)
					return
				}
				if one := x25519KeyFrom(k.priv[:]); one.pub != k.pub {
					t.Errorf("public value of %x is not its scalar's", k.priv)
				}
				mu.Lock()
				if seen[k.priv] {
					t.Errorf("scalar %x given twice", k.priv)
				}
				seen[k.priv] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	x25519Spares.mu.Lock()
	defer x25519Spares.mu.Unlock()
	require.LessOrEqual(t, len(x25519Spares.keys), maxX25519Spares+x25519Batch-1)
}

// RFC 7748 §5.2's iteration (k = u = 9, then k, u = X25519(k, u), k), 1,000
// times, against crypto/ecdh doing the same.
func TestX25519Iterated(t *testing.T) {
	k, u := make([]byte, 32), make([]byte, 32)
	k[0], u[0] = 9, 9
	sk, su := bytes.Clone(k), bytes.Clone(u)
	for range 1000 {
		var out [32]byte
		require.True(t, x25519(&out, (*[32]byte)(k), (*[32]byte)(u)))
		k, u = out[:], k
		s, ok := stdX25519(t, sk, su)
		require.True(t, ok)
		sk, su = s, sk
	}
	require.Equal(t, sk, k)
}

// The low-order points of RFC 7748 §6.1 and the like give zeros: refused,
// through DH as a *PublicValueError.
func TestX25519LowOrder(t *testing.T) {
	key, err := newX25519Key()
	require.NoError(t, err)
	for _, u := range [][]byte{
		make([]byte, 32),                       // 0
		append([]byte{1}, make([]byte, 31)...), // 1
	} {
		var out [32]byte
		require.False(t, x25519(&out, &key.priv, (*[32]byte)(u)), "u %x", u)
		d := &DH{group: 31, x255: key, pub: key.pub[:]}
		_, err := d.SharedSecret(u)
		var pv *PublicValueError
		require.ErrorAs(t, err, &pv)
	}
}

// FuzzX25519: x25519.go against crypto/ecdh for any scalar and u.
func FuzzX25519(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{9}, 32))
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, kb, ub []byte) {
		// Any input: the first 32 octets of each, zero-padded.
		k, u := make([]byte, 32), make([]byte, 32)
		copy(k, kb)
		copy(u, ub)
		key := x25519KeyFrom(k)
		std, err := ecdh.X25519().NewPrivateKey(k)
		require.NoError(t, err)
		require.Equal(t, std.PublicKey().Bytes(), key.pub[:])
		var out [32]byte
		ok := x25519(&out, &key.priv, (*[32]byte)(u))
		want, wantOK := stdX25519(t, k, u)
		require.Equal(t, wantOK, ok)
		if ok {
			require.Equal(t, want, out[:])
		}
	})
}

// BenchmarkX25519: a new key (its public value) and a shared secret, this
// package's against crypto/ecdh's.
//
//	go test -run '^$' -bench X25519 -count 6 ./ike/ikecrypto | benchstat -col /impl -
func BenchmarkX25519(b *testing.B) {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	peer, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{5}, 32))
	require.NoError(b, err)
	u := (*[32]byte)(peer.PublicKey().Bytes())
	std, err := ecdh.X25519().NewPrivateKey(k)
	require.NoError(b, err)
	b.Run("op=key/impl=crypto-ecdh", func(b *testing.B) {
		for b.Loop() {
			_, _ = ecdh.X25519().NewPrivateKey(k)
		}
	})
	b.Run("op=key/impl=keyplane", func(b *testing.B) {
		for b.Loop() {
			_ = x25519KeyFrom(k)
		}
	})
	b.Run("op=new-key/impl=keyplane-batched", func(b *testing.B) {
		for b.Loop() {
			_, _ = newX25519Key()
		}
	})
	b.Run("op=new-key/impl=keyplane-one", func(b *testing.B) {
		var seed [x25519Len]byte
		for b.Loop() {
			_, _ = rand.Read(seed[:])
			_ = x25519KeyFrom(seed[:])
		}
	})
	b.Run("op=secret/impl=crypto-ecdh", func(b *testing.B) {
		for b.Loop() {
			_, _ = std.ECDH(peer.PublicKey())
		}
	})
	key := x25519KeyFrom(k)
	b.Run("op=secret/impl=keyplane", func(b *testing.B) {
		var out [32]byte
		for b.Loop() {
			_ = x25519(&out, &key.priv, u)
		}
	})
}
