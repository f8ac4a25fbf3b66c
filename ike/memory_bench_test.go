package ike

import (
	"flag"
	"log/slog"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/internal/memtest"
)

var benchHeapProfile = flag.String("bench.heapprofile", "", "BenchmarkTunnelMemory, BenchmarkTunnels (poll=off): write the heap profile here while the tunnels are up")

// BenchmarkTunnelMemory brings up -bench.tunnels IKE SAs (one child each)
// between two engines on nokernel over loopback and reports the live heap
// they added after a full GC, per IKE SA + child (B/tunnel): each tunnel
// is an IKE SA and a child at the initiator and at the responder, each
// engine with its nokernel dataplane holding two SAs and the policies, so
// the heap grown is divided by twice the tunnels. -bench.heapprofile
// writes the heap profile while they are up (inuse_space names what is
// kept; -memprofilerate=512 for detail):
//
//	go test -run '^$' -bench BenchmarkTunnelMemory -benchtime 1x -count 4 ./ike -args -bench.tunnels=10000
func BenchmarkTunnelMemory(b *testing.B) {
	n := *benchTunnels
	ca, cb := tunnelConfigs(b, n)
	var perTunnel float64
	for b.Loop() {
		b.StopTimer()
		a := newPeer(b, "a", ca, withLogLevel(slog.LevelWarn))
		z := newPeer(b, "b", cb, withLogLevel(slog.LevelWarn))
		before := memtest.LiveHeap()
		b.StartTimer()
		require.NoError(b, bringUp(b.Context(), a.e, n, *benchInflight))
		b.StopTimer()
		after := memtest.LiveHeap()
		perTunnel += float64(after-before) / float64(2*n)
		memtest.WriteHeapProfile(b, *benchHeapProfile)
		require.NoError(b, a.e.Close())
		require.NoError(b, z.e.Close())
		b.StartTimer()
	}
	b.ReportMetric(perTunnel/float64(b.N), "B/tunnel")
}

// TestIKESASize: an IKE SA's struct fits the allocator's 576-octet size
// class. The next class is 640 octets, 64 more per IKE SA end; the small
// fields sit together after id and initiator, times are stamps; a field
// that must be added goes behind one of the pointers to rarely used state
// (hs, frag, mke, vips) or displaces another.
func TestIKESASize(t *testing.T) {
	if n := unsafe.Sizeof(ikeSA{}); n > 576 {
		t.Errorf("ikeSA is %d octets, over the 576-octet size class", n)
	}
}

// TestChildSASize: a child's struct fits the allocator's 384-octet size
// class (the next is 416). The bools sit together in one word's padding;
// what only an initiated child needs until it is up is behind rec; a
// field that must be added displaces another or goes behind a pointer.
func TestChildSASize(t *testing.T) {
	if n := unsafe.Sizeof(childSA{}); n > 384 {
		t.Errorf("childSA is %d octets, over the 384-octet size class", n)
	}
}

// TestTimerSize: a loop timer fits the 48-octet size class (its deadline
// a stamp); an IKE SA and its child hold two to four of them.
func TestTimerSize(t *testing.T) {
	if n := unsafe.Sizeof(timer{}); n > 48 {
		t.Errorf("timer is %d octets, over the 48-octet size class", n)
	}
}
