package ha

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzOpen: a record read from etcd opens only if it is exactly what
// this cluster key sealed for this key path; anything else is a
// *SealError (never a panic), and a record that opens carries what was
// sealed.
func FuzzOpen(f *testing.F) {
	s, err := NewSealer(testKey(1))
	if err != nil {
		f.Fatal(err)
	}
	const path = "/kp/ike/0102030405060708"
	plain := []byte(`{"conn":"b","spi_i":1}`)
	sealed := s.Seal(path, plain)
	f.Add(path, sealed)
	f.Add(path, sealed[:len(sealed)-1])
	f.Add("/kp/ike/02", sealed)
	f.Add(path, []byte{sealVersion})
	f.Add(path, []byte{})
	f.Fuzz(func(t *testing.T, p string, b []byte) {
		got, err := s.Open(p, b)
		if err != nil {
			var se *SealError
			if !errors.As(err, &se) || !errors.Is(err, ErrUnseal) || se.Key != p {
				t.Fatalf("Open error %v (%T), want a *SealError for %q", err, err, p)
			}
			return
		}
		// Forging a record without the key is not expected of a fuzzer:
		// what opens is the seed, at its own path.
		if p != path || !bytes.Equal(got, plain) {
			t.Fatalf("Open(%q) gave %q", p, got)
		}
	})
}
