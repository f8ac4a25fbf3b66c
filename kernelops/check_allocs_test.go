package kernelops

import (
	"errors"
	"net/netip"
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

// TestCheckPolicyAllocations: as for SAs, checking a valid policy or
// policy ID allocates nothing; a refused one names itself.
func TestCheckPolicyAllocations(t *testing.T) {
	c := Capabilities{Caps: CapSPD}
	p := &Policy{
		Selector: Selector{Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16")},
		Dir:      DirOut, Action: ActionIPsec,
		Templates: []Template{{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"),
			Proto: ProtoESP, Mode: ModeTunnel, ReqID: 1}},
	}
	id := p.ID()
	var err error
	if n := testing.AllocsPerRun(100, func() { err = c.CheckPolicy("test", "add policy", p) }); err != nil || n != 0 {
		t.Fatalf("CheckPolicy of a valid policy: %v, %.0f allocations, want none", err, n)
	}
	if n := testing.AllocsPerRun(100, func() { err = c.CheckPolicyID("test", "delete policy", id) }); err != nil || n != 0 {
		t.Fatalf("CheckPolicyID of a valid ID: %v, %.0f allocations, want none", err, n)
	}
	marked := *p
	marked.Mark = Mark{Value: 1, Mask: 0xffffffff}
	var e *Error
	err = c.CheckPolicy("test", "add policy", &marked)
	if !errors.As(err, &e) || !errors.Is(err, ErrNotSupported) || e.Field != "Mark" || e.Object != marked.ID().String() {
		t.Fatalf("policy with a mark, no CapMarks: got %v (%#v)", err, e)
	}
	err = c.CheckPolicyID("test", "delete policy", marked.ID())
	if !errors.As(err, &e) || !errors.Is(err, ErrNotSupported) || e.Field != "Mark" || e.Object != marked.ID().String() {
		t.Fatalf("policy ID with a mark, no CapMarks: got %v (%#v)", err, e)
	}
	withIfID := p.ID()
	withIfID.IfID = 5
	err = c.CheckPolicyID("test", "delete policy", withIfID)
	if !errors.As(err, &e) || !errors.Is(err, ErrNotSupported) || e.Field != "IfID" {
		t.Fatalf("policy ID with an if_id, no CapIfID: got %v (%#v)", err, e)
	}
	bad := p.ID()
	bad.Dir = 9
	if err = c.CheckPolicyID("test", "delete policy", bad); !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || e.Field != "Dir" {
		t.Fatalf("policy ID with direction 9: got %v (%#v)", err, e)
	}
}

// TestValidateSPIRequestAllocations: every child's inbound SPI is asked
// for through it: a valid request allocates nothing; a bad one is named.
func TestValidateSPIRequestAllocations(t *testing.T) {
	req := SPIRequest{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"), Proto: ProtoESP, ReqID: 7}
	opts := Options{SPIMin: 0x100, SPIMax: 0xffffffff}
	var err error
	if n := testing.AllocsPerRun(100, func() { _, err = ValidateSPIRequest("test", "alloc SPI", req, opts) }); err != nil || n != 0 {
		t.Fatalf("ValidateSPIRequest of a valid request: %v, %.0f allocations, want none", err, n)
	}
	req.Dst = netip.MustParseAddr("2001:db8::1")
	_, err = ValidateSPIRequest("test", "alloc SPI", req, opts)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || e.Field != "Src" || e.Object != "esp 192.0.2.1->2001:db8::1" {
		t.Fatalf("mixed families: got %v (%#v)", err, e)
	}
}
