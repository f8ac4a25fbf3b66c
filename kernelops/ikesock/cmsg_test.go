//go:build linux || freebsd || netbsd || openbsd || darwin

package ikesock

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzPktinfo feeds arbitrary control-message bytes (what recvmsg hands
// back from the kernel) to the packet-info decoder: it must never panic
// nor read past its input, every message it walks must lie inside it, and
// an IPv6 message built by the writer must decode to its address (the
// in6_pktinfo field the writer fills is the one the reader reads).
func FuzzPktinfo(f *testing.F) {
	f.Add(appendSrcInfo(nil, netip.MustParseAddr("127.0.0.2")))
	f.Add(appendSrcInfo(nil, netip.MustParseAddr("2001:db8::1")))
	f.Add(appendSrcInfo(appendSrcInfo(nil, netip.MustParseAddr("127.0.0.2")), netip.MustParseAddr("2001:db8::1")))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, oob []byte) {
		dstAddr(oob)
		for b, n := oob, 0; ; n++ {
			_, _, data, rest, ok := nextCmsg(b)
			if !ok {
				break
			}
			if len(rest) >= len(b) || len(data) > len(b) || n > len(oob) {
				t.Fatalf("walk does not advance: %d bytes left of %d", len(rest), len(b))
			}
			b = rest
		}
	})
}

func TestPktinfoRoundTrip(t *testing.T) {
	a6 := netip.MustParseAddr("2001:db8::1")
	one := appendSrcInfo(nil, a6)
	if got, ok := dstAddr(one); !ok || got != a6 {
		t.Errorf("decoded %v %v, want %s", got, ok, a6)
	}
	// An unknown message first is skipped.
	two := appendSrcInfo(appendCmsg(nil, 0x7fff, 1, []byte{1, 2, 3}), a6)
	if got, ok := dstAddr(two); !ok || got != a6 {
		t.Errorf("decoded %v %v after another message, want %s", got, ok, a6)
	}
	// A message cut short is not read.
	if got, ok := dstAddr(one[:len(one)-5]); ok {
		t.Errorf("decoded %v from a truncated message", got)
	}
	// Appending builds in the caller's buffer.
	buf := make([]byte, 0, oobCap)
	if out := appendSrcInfo(buf, a6); &out[0] != &buf[:1][0] || !bytes.Equal(out, one) {
		t.Error("appendSrcInfo did not build in place")
	}
}
