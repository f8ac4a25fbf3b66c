package kernelops

import (
	"errors"
	"testing"

	"github.com/keyplane/keyplane/iana"
)

// TestCheckSAAllocations: a batch checks every SA, so a valid SA costs
// no allocation (the object's name is made only for an error), and a
// refused SA still names itself.
func TestCheckSAAllocations(t *testing.T) {
	c := Capabilities{Caps: CapSAD | CapTunnelMode,
		Algorithms: AlgorithmSet{Encryption: []EncrID{iana.EncrAESGCM16}}}
	sa := goodSA()
	var err error
	if n := testing.AllocsPerRun(100, func() { err = c.CheckSA("test", "add SA", sa) }); err != nil || n != 0 {
		t.Fatalf("CheckSA of a valid SA: %v, %.0f allocations, want none", err, n)
	}
	tests := []struct {
		name  string
		mod   func(*SA)
		field string
		want  error
	}{
		{"invalid", func(sa *SA) { sa.ID.SPI = 7 }, "ID.SPI", ErrInvalid},
		{"algorithm missing", func(sa *SA) {
			sa.Encryption = Encryption{ID: iana.EncrChaCha20Poly1305, Key: make(Key, 36)}
		}, "Encryption.ID", ErrNotSupported},
		{"feature missing", func(sa *SA) { sa.ESN, sa.ReplayWindow = true, 64 }, "ESN", ErrNotSupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := goodSA()
			tt.mod(bad)
			err := c.CheckSA("test", "add SA", bad)
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tt.want) || e.Field != tt.field || e.Object != bad.ID.String() {
				t.Fatalf("got %v (%#v), want %v on %s naming %s", err, e, tt.want, tt.field, bad.ID)
			}
		})
	}
}
