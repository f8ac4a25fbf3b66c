package ha

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestSealRoundTrip(t *testing.T) {
	s, err := NewSealer(testKey(1))
	require.NoError(t, err)
	plain := []byte(`{"spi":"0102030405060708","sk_d":"secret"}`)
	sealed := s.Seal("/kp/ike/01", plain)
	assert.False(t, bytes.Contains(sealed, []byte("secret")), "plaintext visible in the sealed record")
	assert.Len(t, sealed, len(plain)+s.Overhead())
	got, err := s.Open("/kp/ike/01", sealed)
	require.NoError(t, err)
	assert.Equal(t, plain, got)
	// Two seals of the same record differ (random nonce).
	assert.NotEqual(t, sealed, s.Seal("/kp/ike/01", plain))
}

func TestSealRefuses(t *testing.T) {
	s, err := NewSealer(testKey(1))
	require.NoError(t, err)
	other, err := NewSealer(testKey(2))
	require.NoError(t, err)
	sealed := s.Seal("/kp/ike/01", []byte("record"))
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	badVersion := bytes.Clone(sealed)
	badVersion[0] = 9
	for _, c := range []struct {
		name   string
		s      *Sealer
		path   string
		sealed []byte
	}{
		{"tampered", s, "/kp/ike/01", tampered},
		{"wrong key", other, "/kp/ike/01", sealed},
		{"swapped to another key path", s, "/kp/ike/02", sealed},
		{"truncated", s, "/kp/ike/01", sealed[:10]},
		{"other version", s, "/kp/ike/01", badVersion},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.s.Open(c.path, c.sealed)
			require.ErrorIs(t, err, ErrUnseal)
			var se *SealError
			require.True(t, errors.As(err, &se))
			assert.Equal(t, c.path, se.Key)
		})
	}
	_, err = NewSealer(make([]byte, 16))
	require.Error(t, err)
}
