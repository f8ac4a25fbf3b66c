package ike

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"strconv"
)

// The text of a listing's entries is appended into one buffer per entry
// and made a string once: each field is a slice of that string. A child
// costs one allocation, not one per field, and its selectors are printed
// without working out their prefixes one bit at a time (tsRange.String):
// at 100,000 children listed every 0.2 s the formatting was the larger
// part of the listing's cost.

// appendHex appends v as digits hex digits, zero-padded (%0*x).
func appendHex(b []byte, v uint64, digits int) []byte {
	for i := digits - 1; i >= 0; i-- {
		b = append(b, "0123456789abcdef"[(v>>(4*uint(i)))&0xf])
	}
	return b
}

// appendAddr appends a.String() (AppendTo appends nothing for the zero
// Addr, String says so).
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, "invalid IP"...)
	}
	return a.AppendTo(b)
}

// appendAddrPort appends p.String().
func appendAddrPort(b []byte, p netip.AddrPort) []byte {
	if !p.Addr().IsValid() {
		return append(b, "invalid AddrPort"...)
	}
	return p.AppendTo(b)
}

// appendRanges appends rangesString(rs).
func appendRanges(b []byte, rs []tsRange) []byte {
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.appendText(b)
	}
	return b
}

// appendText appends r.String().
func (r tsRange) appendText(b []byte) []byte {
	if p, ok := r.onePrefix(); ok {
		b = p.AppendTo(b)
	} else {
		b = appendAddr(b, r.start)
		b = append(b, '-')
		b = appendAddr(b, r.end)
	}
	if r.proto != 0 || r.sport != 0 || r.eport != 0xffff {
		b = append(b, '[')
		b = strconv.AppendUint(b, uint64(r.proto), 10)
		b = append(b, '/')
		b = strconv.AppendUint(b, uint64(r.sport), 10)
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(r.eport), 10)
		b = append(b, ']')
	}
	return b
}

// onePrefix is r.prefix() by arithmetic: the range is one prefix when
// start and end differ in exactly their last k bits, start's all zero
// and end's all one.
func (r tsRange) onePrefix() (netip.Prefix, bool) {
	if !r.start.IsValid() || !r.end.IsValid() || r.start.BitLen() != r.end.BitLen() {
		return netip.Prefix{}, false
	}
	s, e := r.start.As16(), r.end.As16()
	sh, sl := binary.BigEndian.Uint64(s[:8]), binary.BigEndian.Uint64(s[8:])
	eh, el := binary.BigEndian.Uint64(e[:8]), binary.BigEndian.Uint64(e[8:])
	xh, xl := sh^eh, sl^el
	var k int // host bits
	switch {
	case xh == 0:
		k = 64 - bits.LeadingZeros64(xl)
		if xl&(xl+1) != 0 || sl&xl != 0 {
			return netip.Prefix{}, false
		}
	case xl == ^uint64(0):
		k = 128 - bits.LeadingZeros64(xh)
		if xh&(xh+1) != 0 || sh&xh != 0 || sl != 0 {
			return netip.Prefix{}, false
		}
	default:
		return netip.Prefix{}, false
	}
	if k > r.start.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(r.start, r.start.BitLen()-k), true
}
