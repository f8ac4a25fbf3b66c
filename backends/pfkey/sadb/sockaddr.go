package sadb

import (
	"encoding/binary"
	"net/netip"
)

// SockaddrLen returns the length of the sockaddr for a: 16 for IPv4
// (sockaddr_in), 28 for IPv6 (sockaddr_in6), on every dialect.
func SockaddrLen(a netip.Addr) int {
	if a.Is4() {
		return 16
	}
	return 28
}

// appendSockaddr appends a's sockaddr (port in network order), unpadded.
func (d *Dialect) appendSockaddr(b []byte, a netip.AddrPort) ([]byte, error) {
	// The family is the address's own: an IPv4-mapped IPv6 address stays
	// a sockaddr_in6, so what Parse read marshals to the same bytes.
	ip := a.Addr()
	if !ip.IsValid() {
		return nil, ErrFamily
	}
	fam, n := d.AFInet, 16
	if ip.Is6() {
		fam, n = d.AFInet6, 28
	}
	start := len(b)
	b = append(b, make([]byte, n)...)
	s := b[start:]
	switch d.Sockaddr {
	case SockaddrBSD:
		s[0] = byte(n)
		s[1] = byte(fam)
	default:
		d.Order.PutUint16(s[0:2], fam)
	}
	binary.BigEndian.PutUint16(s[2:4], a.Port())
	if ip.Is4() {
		v := ip.As4()
		copy(s[4:8], v[:])
	} else {
		v := ip.As16()
		copy(s[8:24], v[:]) // after sin6_flowinfo; sin6_scope_id stays 0
	}
	return b, nil
}

// parseSockaddr reads the sockaddr at b and returns it with its length.
func (d *Dialect) parseSockaddr(b []byte) (netip.AddrPort, int, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, 0, ErrTruncated
	}
	var fam uint16
	saLen := -1
	switch d.Sockaddr {
	case SockaddrBSD:
		saLen, fam = int(b[0]), uint16(b[1])
	default:
		fam = d.Order.Uint16(b[0:2])
	}
	n := d.sockaddrLen(fam)
	if n == 0 {
		return netip.AddrPort{}, 0, ErrFamily
	}
	if saLen >= 0 && saLen != n {
		return netip.AddrPort{}, 0, ErrLength
	}
	if len(b) < n {
		return netip.AddrPort{}, 0, ErrTruncated
	}
	port := binary.BigEndian.Uint16(b[2:4])
	var ip netip.Addr
	if n == 16 {
		ip = netip.AddrFrom4([4]byte(b[4:8]))
	} else {
		ip = netip.AddrFrom16([16]byte(b[8:24]))
	}
	return netip.AddrPortFrom(ip, port), n, nil
}

// align8 rounds n up to a multiple of 8 (PFKEY_ALIGN8).
func align8(n int) int { return (n + 7) &^ 7 }

func netipFrom4(b []byte) netip.Addr  { return netip.AddrFrom4([4]byte(b[:4])) }
func netipFrom16(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b[:16])) }
