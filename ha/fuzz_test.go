package ha

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/keyplane/keyplane/ike"
)

var fuzzKey = bytes.Repeat([]byte{7}, 32)

// FuzzOpen: whatever etcd hands a mirror (a tampered, truncated or
// foreign record) is opened or refused with a *SealError, never a panic;
// what opens is exactly what was sealed at that path.
func FuzzOpen(f *testing.F) {
	s, err := NewSealer(fuzzKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("ike/0000000000000001", s.Seal("ike/0000000000000001", []byte(`{"spi_i":1}`)))
	f.Add("child/00000001", s.Seal("child/00000001", nil))
	f.Add("x", []byte{sealVersion})
	f.Add("x", []byte{2, 0, 0})
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, path string, sealed []byte) {
		plain, err := s.Open(path, sealed)
		if err != nil {
			var se *SealError
			if !errors.As(err, &se) || !errors.Is(err, ErrUnseal) || se.Key != path {
				t.Fatalf("refusal is not a *SealError for %q: %v", path, err)
			}
			return
		}
		again := s.Seal(path, plain)
		back, err := s.Open(path, again)
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("a record that opened does not round-trip: %v", err)
		}
	})
}

// FuzzRecord: a record that opens (sealed by a node with the cluster key,
// so trusted, but possibly written by another version) is decoded as a
// takeover decodes it: IKE SA, child and counter records; a decode error
// is an error, never a panic.
func FuzzRecord(f *testing.F) {
	for _, seed := range []any{
		&ike.HAIKE{SPIi: 1, SPIr: 2, Initiator: true, Children: []uint32{5}},
		&ike.HAChild{InSPI: 5, OutSPI: 6},
		&CounterRecord{},
	} {
		b, err := json.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"children":[1,2,3],"keys":{"sk_d":"AAAA"}}`))
	f.Add([]byte(`{"local":"not an address"}`))
	f.Fuzz(func(t *testing.T, plain []byte) {
		var st ike.HAIKE
		_ = json.Unmarshal(plain, &st)
		zeroIKE(&st)
		var ch ike.HAChild
		_ = json.Unmarshal(plain, &ch)
		zeroChild(&ch)
		var cr CounterRecord
		_ = json.Unmarshal(plain, &cr)
	})
}
