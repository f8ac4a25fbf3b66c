// Package caddr keeps a netip.Addr in 17 octets: the address as 16
// octets and its kind, without the pointer a netip.Addr holds for its
// family and zone. At 100,000 tunnels the dataplane model's SAs and
// policies and the engine's policy references each keep several
// addresses, so the 7 octets and the pointer the GC scans add up. A
// zoned address keeps its zone apart (the owner stores it where few
// entries pay for it); a prefix's address has no zone.
package caddr

import "net/netip"

// Addr is an address in compact form; the zero Addr is the zero
// netip.Addr. Addrs compare with == as the addresses they hold (but for
// the zone).
type Addr struct {
	b [16]byte
	k Kind
}

// Kind is an Addr's family.
type Kind uint8

const (
	None  Kind = iota // the zero netip.Addr
	V4                // IPv4
	V6                // IPv6 without a zone
	Zoned             // IPv6 with a zone, kept apart by the owner
)

// Pack is a in compact form.
func Pack(a netip.Addr) Addr {
	switch {
	case !a.IsValid():
		return Addr{}
	case a.Is4():
		return Addr{b: a.As16(), k: V4}
	case a.Zone() != "":
		return Addr{b: a.As16(), k: Zoned}
	}
	return Addr{b: a.As16(), k: V6}
}

// Kind is c's family.
func (c Addr) Kind() Kind { return c.k }

// Unpack is the address; zone is its zone when it is Zoned.
func (c Addr) Unpack(zone string) netip.Addr {
	switch c.k {
	case V4:
		return netip.AddrFrom4([4]byte(c.b[12:]))
	case V6:
		return netip.AddrFrom16(c.b)
	case Zoned:
		return netip.AddrFrom16(c.b).WithZone(zone)
	}
	return netip.Addr{}
}

// PackPrefix is p's address in compact form and its length plus one
// (0: an invalid length, which p keeps as its own).
func PackPrefix(p netip.Prefix) (Addr, uint8) { return Pack(p.Addr()), uint8(p.Bits() + 1) }

// UnpackPrefix is the prefix PackPrefix packed.
func UnpackPrefix(a Addr, bitsPlusOne uint8) netip.Prefix {
	return netip.PrefixFrom(a.Unpack(""), int(bitsPlusOne)-1)
}
