package ike

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAppendText: a listing's text built by appending is what the
// String methods print, for selectors that are one prefix and ones that
// are not, IPv4 and IPv6, with and without ports, and for zero addresses.
func TestAppendText(t *testing.T) {
	rs := []tsRange{
		hostRange(netip.MustParseAddr("10.1.0.1"), 0, 0),
		hostRange(netip.MustParseAddr("2001:db8::1"), 17, 53),
		{start: netip.MustParseAddr("10.0.0.0"), end: netip.MustParseAddr("10.255.255.255"), eport: 0xffff},
		{start: netip.MustParseAddr("0.0.0.0"), end: netip.MustParseAddr("255.255.255.255"), eport: 0xffff},
		{start: netip.MustParseAddr("::"), end: netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), eport: 0xffff},
		{start: netip.MustParseAddr("::"), end: netip.MustParseAddr("::ffff:ffff:ffff:ffff"), eport: 0xffff},
		{start: netip.MustParseAddr("2001:db8::"), end: netip.MustParseAddr("2001:db8:0:1:ffff:ffff:ffff:ffff"), eport: 0xffff},
		{start: netip.MustParseAddr("2001:db8::"), end: netip.MustParseAddr("2001:db8:0:1:ffff:ffff:ffff:fffe"), eport: 0xffff},
		{start: netip.MustParseAddr("10.0.0.1"), end: netip.MustParseAddr("10.0.0.2"), eport: 0xffff},
		{start: netip.MustParseAddr("10.0.0.0"), end: netip.MustParseAddr("10.0.0.2"), proto: 6, sport: 1, eport: 1023},
		{start: netip.MustParseAddr("10.0.0.4"), end: netip.MustParseAddr("10.0.0.11"), eport: 0xffff},
		{start: netip.MustParseAddr("::ffff:10.0.0.0"), end: netip.MustParseAddr("::ffff:10.0.0.255"), eport: 0xffff},
	}
	// Random ranges: a start, an end above it, now and then aligned.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		var s, e netip.Addr
		if rng.IntN(2) == 0 {
			a := rng.Uint32()
			k := rng.IntN(33)
			var mask uint32
			if k > 0 {
				mask = 1<<uint(k) - 1
			}
			lo, hi := a&^mask, a|mask
			if rng.IntN(3) == 0 {
				hi -= uint32(rng.IntN(2))
				lo += uint32(rng.IntN(2))
			}
			if hi < lo {
				lo, hi = hi, lo
			}
			s = netip.AddrFrom4([4]byte{byte(lo >> 24), byte(lo >> 16), byte(lo >> 8), byte(lo)})
			e = netip.AddrFrom4([4]byte{byte(hi >> 24), byte(hi >> 16), byte(hi >> 8), byte(hi)})
		} else {
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			k := rng.IntN(129)
			lo, hi := b, b
			for i := range k {
				bit := 127 - i
				lo[bit/8] &^= 1 << (7 - uint(bit%8))
				hi[bit/8] |= 1 << (7 - uint(bit%8))
			}
			if rng.IntN(3) == 0 {
				hi[15] &^= 1
			}
			s, e = netip.AddrFrom16(lo), netip.AddrFrom16(hi)
			if e.Less(s) {
				s, e = e, s
			}
		}
		rs = append(rs, tsRange{start: s, end: e, eport: 0xffff})
	}
	for _, r := range rs {
		require.Equal(t, r.String(), string(r.appendText(nil)), "%v-%v", r.start, r.end)
	}
	require.Equal(t, rangesString(rs[:3]), string(appendRanges(nil, rs[:3])))
	require.Empty(t, appendRanges(nil, nil))

	for _, a := range []netip.Addr{{}, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fe80::1%eth0")} {
		require.Equal(t, a.String(), string(appendAddr(nil, a)))
		p := netip.AddrPortFrom(a, 4500)
		require.Equal(t, p.String(), string(appendAddrPort(nil, p)))
	}
}
