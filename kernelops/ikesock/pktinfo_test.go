//go:build linux || freebsd || netbsd || openbsd || darwin

package ikesock

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv6"
)

// FuzzPktinfo feeds arbitrary control-message bytes (what recvmsg hands
// back from the kernel) to the destination decoder, as read on an IPv4 and
// on an IPv6 socket: it must never panic, what it finds is an address of
// the socket's family, and a reader that decoded other messages before
// finds the same as a fresh one (its buffers are reused from read to read).
func FuzzPktinfo(f *testing.F) {
	f.Add(marshalSrc(netip.MustParseAddr("127.0.0.2")))
	f.Add(marshalSrc(netip.MustParseAddr("2001:db8::1")))
	f.Add(append(marshalSrc(netip.MustParseAddr("127.0.0.2")), marshalSrc(netip.MustParseAddr("2001:db8::1"))...))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	var used dstReader
	f.Fuzz(func(t *testing.T, oob []byte) {
		for _, v6 := range []bool{false, true} {
			var fresh dstReader
			a, ok := fresh.dst(oob, v6)
			if ok && (!a.IsValid() || a.IsUnspecified() || a.Is6() != v6) {
				t.Fatalf("v6=%v: decoded %v", v6, a)
			}
			if b, okb := used.dst(oob, v6); a != b || ok != okb {
				t.Fatalf("v6=%v: a used reader decoded %v %v, a fresh one %v %v", v6, b, okb, a, ok)
			}
		}
	})
}

// TestPktinfo: the IPv6 packet info the writer builds is the one the
// reader reads (struct in6_pktinfo both ways); messages of no interest are
// skipped, malformed ones are not read, and nothing is found on a socket of
// the other family.
func TestPktinfo(t *testing.T) {
	a6 := netip.MustParseAddr("2001:db8::1")
	one := marshalSrc(a6)
	var r dstReader
	got, ok := r.dst(one, true)
	require.True(t, ok, "no address in the writer's message")
	assert.Equal(t, a6, got)

	hops := (&ipv6.ControlMessage{HopLimit: 64}).Marshal() // IPV6_HOPLIMIT: not asked for, skipped
	got, ok = r.dst(append(hops, one...), true)
	require.True(t, ok, "no address after a message of another type")
	assert.Equal(t, a6, got)

	got, ok = r.dst(one[:len(one)-5], true)
	assert.False(t, ok, "decoded %v from a truncated message", got)
	got, ok = r.dst(one, false)
	assert.False(t, ok, "decoded %v from IPv6 packet info on an IPv4 socket", got)
}
