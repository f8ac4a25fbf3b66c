package nokernel

import "net/netip"

// caddr is a netip.Addr in 17 octets, without the pointer a netip.Addr
// keeps for its family and zone: the address as 16 octets and its kind.
// An entry keeps the zone of a caddrZoned address apart.
type caddr struct {
	b [16]byte
	k uint8
}

const (
	caddrNone  = iota // the zero Addr
	caddr4            // IPv4
	caddr6            // IPv6 without a zone
	caddrZoned        // IPv6 with a zone
)

func packAddr(a netip.Addr) caddr {
	switch {
	case !a.IsValid():
		return caddr{}
	case a.Is4():
		return caddr{b: a.As16(), k: caddr4}
	case a.Zone() != "":
		return caddr{b: a.As16(), k: caddrZoned}
	}
	return caddr{b: a.As16(), k: caddr6}
}

// addr is the address; zone is its zone when it is caddrZoned.
func (c *caddr) addr(zone string) netip.Addr {
	switch c.k {
	case caddr4:
		return netip.AddrFrom4([4]byte(c.b[12:]))
	case caddr6:
		return netip.AddrFrom16(c.b)
	case caddrZoned:
		return netip.AddrFrom16(c.b).WithZone(zone)
	}
	return netip.Addr{}
}
