package message

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
)

// A CFG_REQUEST for any IPv4 and IPv6 address and DNS servers of both,
// and a CFG_REPLY giving 10.3.0.1, 2001:db8::1/128 and 10.3.0.53, byte by
// byte as RFC 7296 §3.15 lays them out.
func TestCPGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		cp   *CP
		hex  string
	}{
		{"request", &CP{CFGType: CFGRequest, Attrs: []CFGAttr{
			CFGAddr(InternalIP4Address, netip.IPv4Unspecified()), CFGAddr(InternalIP4DNS, netip.Addr{}),
			CFGAddr(InternalIP6Address, netip.IPv6Unspecified()), CFGAddr(InternalIP6DNS, netip.Addr{})}},
			"01000000" + "00010000" + "00030000" + "00080000" + "000a0000"},
		{"reply", &CP{CFGType: CFGReply, Attrs: []CFGAttr{
			CFGAddr(InternalIP4Address, netip.MustParseAddr("10.3.0.1")),
			CFGAddr(InternalIP6Address, netip.MustParseAddr("2001:db8::1")),
			CFGAddr(InternalIP4DNS, netip.MustParseAddr("10.3.0.53"))}},
			"02000000" + "00010004" + "0a030001" + "00080011" + "20010db8000000000000000000000001" + "80" + "00030004" + "0a030035"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.cp.appendBody(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != c.hex {
				t.Fatalf("encoded %s\nwant    %s", got, c.hex)
			}
			back, err := decodeCP(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			if back.CFGType != c.cp.CFGType || len(back.Attrs) != len(c.cp.Attrs) {
				t.Fatalf("decoded %v, want %v", back, c.cp)
			}
			for i, a := range back.Attrs {
				if a.Type != c.cp.Attrs[i].Type || !bytes.Equal(a.Value, c.cp.Attrs[i].Value) {
					t.Errorf("attribute %d: %v %x, want %v %x", i, a.Type, a.Value, c.cp.Attrs[i].Type, c.cp.Attrs[i].Value)
				}
			}
		})
	}
}

func TestCPAddr(t *testing.T) {
	for _, c := range []struct {
		a    CFGAttr
		want string
		err  bool
	}{
		{CFGAttr{Type: InternalIP4Address}, "0.0.0.0", false},
		{CFGAttr{Type: InternalIP4Address, Value: []byte{10, 3, 0, 7}}, "10.3.0.7", false},
		{CFGAttr{Type: InternalIP4Address, Value: []byte{10, 3, 0}}, "", true},
		{CFGAttr{Type: InternalIP6Address, Value: make([]byte, 16)}, "", true}, // without the prefix length
		{CFGAttr{Type: InternalIP6Address, Value: append(netip.MustParseAddr("fd00::5").AsSlice(), 64)}, "fd00::5", false},
		{CFGAttr{Type: InternalIP6DNS, Value: netip.MustParseAddr("fd00::53").AsSlice()}, "fd00::53", false},
		{CFGAttr{Type: 7, Value: []byte{1}}, "", true},
	} {
		got, err := c.a.Addr()
		if (err != nil) != c.err || (err == nil && got.String() != c.want) {
			t.Errorf("%v %x: %v %v, want %s (error %v)", c.a.Type, c.a.Value, got, err, c.want, c.err)
		}
	}
}

func TestCPMalformed(t *testing.T) {
	for _, c := range []struct {
		name string
		hex  string
		want error
	}{
		{"short body", "010000", ErrTruncated},
		{"short attribute header", "01000000" + "0001", ErrTruncated},
		{"attribute past the end", "01000000" + "00010004" + "0a03", ErrTruncated},
		{"reserved bit", "01000000" + "80010000", ErrInvalidSyntax},
	} {
		b, _ := hex.DecodeString(c.hex)
		_, err := decodeCP(b, 0)
		var pe *ParseError
		if !errors.Is(err, c.want) || !errors.As(err, &pe) || pe.Payload != PayloadCP {
			t.Errorf("%s: %v, want a CP ParseError %v", c.name, err, c.want)
		}
	}
	many := []byte{1, 0, 0, 0}
	for range maxCFGAttrs + 1 {
		many = append(many, 0, 1, 0, 0)
	}
	if _, err := decodeCP(many, 0); !errors.Is(err, ErrInvalidSyntax) {
		t.Errorf("%d attributes: %v, want refused", maxCFGAttrs+1, err)
	}
	if _, err := (&CP{Attrs: make([]CFGAttr, maxCFGAttrs+1)}).appendBody(nil); err == nil {
		t.Error("encoding too many attributes succeeded")
	}
}

// FuzzCP: any bytes decode to a CP payload or a *ParseError; what
// decodes encodes back to the same bytes; address attributes read or
// fail without panicking.
func FuzzCP(f *testing.F) {
	for _, h := range []string{"01000000000100000003000000080000000a0000",
		"02000000000100040a0300010008001120010db80000000000000000000000018000030004" + "0a030035", "0100000080010000"} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeCP(b, 0)
		if err != nil {
			checkParseError(t, err)
			return
		}
		for _, a := range p.Attrs {
			_, _ = a.Addr()
		}
		_ = p.String()
		out, err := p.appendBody(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		// Reserved octets are written as zero; the rest is kept.
		want := append([]byte{b[0], 0, 0, 0}, b[4:]...)
		if !bytes.Equal(out, want) {
			t.Fatalf("re-encoded %x\nfrom      %x", out, b)
		}
	})
}
