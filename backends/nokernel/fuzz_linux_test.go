package nokernel

import (
	"net/netip"
	"testing"
)

// FuzzPktinfo feeds arbitrary control-message bytes (what recvmsg hands
// back from the kernel) to the packet-info decoder: it must never panic,
// and a message it built itself must round-trip.
func FuzzPktinfo(f *testing.F) {
	f.Add(pktinfoSrc(netip.MustParseAddr("127.0.0.2"), false))
	f.Add(pktinfoSrc(netip.MustParseAddr("2001:db8::1"), true))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, oob []byte) {
		pktinfoDst(oob)
	})
}

func TestPktinfoRoundTrip(t *testing.T) {
	for _, a := range []string{"127.0.0.2", "2001:db8::1"} {
		addr := netip.MustParseAddr(a)
		oob := pktinfoSrc(addr, addr.Is6())
		// pktinfoSrc fills the source field; for IPv6 that is also the
		// field the receive side reads.
		if got, ok := pktinfoDst(oob); addr.Is6() && (!ok || got != addr) {
			t.Errorf("%s: decoded %v %v", a, got, ok)
		}
	}
}
