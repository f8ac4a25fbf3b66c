//go:build vpp

package vpp

import (
	"net/netip"

	"go.fd.io/govpp/binapi/ip_types"
)

func toAddr(a netip.Addr) ip_types.Address {
	var out ip_types.Address
	if a.Is4() {
		out.Af = ip_types.ADDRESS_IP4
		out.Un.SetIP4(a.As4())
	} else {
		out.Af = ip_types.ADDRESS_IP6
		out.Un.SetIP6(a.As16())
	}
	return out
}

// fromAddr returns the zero Addr for an unknown family.
func fromAddr(a ip_types.Address) netip.Addr {
	switch a.Af {
	case ip_types.ADDRESS_IP4:
		return netip.AddrFrom4(a.Un.GetIP4())
	case ip_types.ADDRESS_IP6:
		return netip.AddrFrom16(a.Un.GetIP6())
	}
	return netip.Addr{}
}

func toPrefix(p netip.Prefix) ip_types.Prefix {
	return ip_types.Prefix{Address: toAddr(p.Addr()), Len: uint8(p.Bits())}
}

func fromPrefix(p ip_types.Prefix) netip.Prefix {
	a := fromAddr(p.Address)
	if !a.IsValid() || int(p.Len) > a.BitLen() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, int(p.Len))
}

// lastAddr is the highest address of p (its broadcast address for IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// rangePrefix turns an address range back into a prefix, or reports that
// it is not one.
func rangePrefix(lo, hi netip.Addr) (netip.Prefix, bool) {
	if !lo.IsValid() || lo.Is4() != hi.Is4() {
		return netip.Prefix{}, false
	}
	for bits := 0; bits <= lo.BitLen(); bits++ {
		p := netip.PrefixFrom(lo, bits)
		if p.Masked().Addr() == lo && lastAddr(p) == hi {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// fullRange is "any address" of the family.
func fullRange(v6 bool) netip.Prefix {
	if v6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}
