package caddr

import (
	"net/netip"
	"testing"
)

// TestRoundTrip: an address and a prefix read back exactly (==) from
// their compact forms, a zone given back apart.
func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"", "0.0.0.0", "192.0.2.1", "255.255.255.255", "::", "::1", "2001:db8::1",
		"::ffff:192.0.2.1", "fe80::1%eth0", "fe80::1%1", "ff02::1%x"} {
		var a netip.Addr
		if s != "" {
			a = netip.MustParseAddr(s)
		}
		c := Pack(a)
		zone := ""
		if c.Kind() == Zoned {
			zone = a.Zone()
		}
		if got := c.Unpack(zone); got != a {
			t.Errorf("%q reads back %v", s, got)
		}
		if a.Zone() != "" {
			continue // a prefix holds no zone
		}
		for _, bits := range []int{-1, 0, 8, 32, 64, 128, 129} {
			p := netip.PrefixFrom(a, bits)
			if got := UnpackPrefix(PackPrefix(p)); got != p {
				t.Errorf("prefix %v (%q/%d) reads back %v", p, s, bits, got)
			}
		}
	}
}
