package ike

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// The listing benchmark's size; the figures in the docs come from
//
//	go test -run '^$' -bench BenchmarkList -count 4 ./ike
var benchListSAs = flag.Int("bench.listsas", 100000, "BenchmarkList: IKE SAs (one child each) the listed engine holds")

// fillSAs adds n IKE SAs, each established with one installed child, to
// p's engine as IKE_AUTH leaves them for a listing (no keys, timers or
// sockets: they are listed, never used), and the children's two SAs to
// p's dataplane, for the usage read. They are removed again before the
// engine closes. It returns them in ID order.
func fillSAs(tb testing.TB, p *peer, n int) []*ikeSA {
	tb.Helper()
	conn := &config.Connection{Name: "fill"}
	child := &config.Child{Name: "fill-net"}
	local, remote := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	key := make(kernelops.Key, 20)
	ctx := context.Background()
	for i := range n {
		for _, id := range []kernelops.SAID{
			{Src: remote, Dst: local, SPI: 0x10000000 + uint32(i), Proto: kernelops.ProtoESP},
			{Src: local, Dst: remote, SPI: 0x20000000 + uint32(i), Proto: kernelops.ProtoESP},
		} {
			require.NoError(tb, p.b.AddSA(ctx, &kernelops.SA{ID: id, Mode: kernelops.ModeTunnel, ReqID: 0x1000 + uint32(i),
				Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: key}}))
		}
	}
	var sas []*ikeSA
	require.NoError(tb, p.e.call(ctx, func() {
		e := p.e
		now := e.nowStamp()
		for i := range n {
			sa := &ikeSA{e: e, id: e.newIKEID(), conn: conn, initiator: true, spii: 1<<40 + uint64(i), spir: 1<<41 + uint64(i),
				state: ikeEstablished, created: now, estAt: now,
				local: netip.AddrPortFrom(local, 500), remote: netip.AddrPortFrom(remote, 500)}
			ch := &childSA{e: e, id: e.newChildID(), cfg: child, ike: sa, state: childInstalled, reqid: 0x1000 + uint32(i),
				mode: kernelops.ModeTunnel, inSPI: 0x10000000 + uint32(i), outSPI: 0x20000000 + uint32(i),
				suite:     ikecrypto.ChildSuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128},
				localAddr: local, remoteAddr: remote, estAt: now, listed: true,
				localTS:  []tsRange{hostRange(tunnelAddr(1, i%60000), 0, 0)},
				remoteTS: []tsRange{hostRange(tunnelAddr(2, i%60000), 0, 0)}}
			sa.children = []*childSA{ch}
			e.addSA(sa.localSPI(), sa)
			sas = append(sas, sa)
		}
	}))
	tb.Cleanup(func() {
		_ = p.e.call(context.Background(), func() {
			for _, sa := range sas {
				p.e.removeSA(sa)
			}
		})
	})
	return sas
}

// handshakeLoad keeps workers initiating and terminating tunnels t0..
// t(workers-1) of a (tunnelConfigs) until ctx ends, and counts the
// handshakes completed.
func handshakeLoad(ctx context.Context, a *Engine, workers int, done *atomic.Int64) func() {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if a.Initiate(ctx, fmt.Sprintf("t%d-net", w)) != nil {
					continue
				}
				done.Add(1)
				_ = a.Terminate(ctx, fmt.Sprintf("t%d", w))
			}
		})
	}
	return wg.Wait
}

// BenchmarkList lists the children of an engine holding -bench.listsas
// IKE SAs with one child each (ListChildren, as `keyplane child list`
// does, each entry yielded and dropped), while the engine keeps
// completing handshakes with another (load=handshakes: 4 tunnels
// initiated and terminated over and over). It reports the longest and the
// mean time a call of the listing held the loop (hold-max-µs,
// hold-mean-µs), how many calls a listing made, the handshakes
// completed per second during the listings, and without them the
// process's CPU time per child listed (cpu-ns/child).
func BenchmarkList(b *testing.B) {
	n := *benchListSAs
	for _, load := range []string{"none", "handshakes"} {
		b.Run(fmt.Sprintf("sas=%d/load=%s", n, load), func(b *testing.B) {
			ca, cb := tunnelConfigs(b, 4)
			a := newPeer(b, "a", ca, withLogLevel(slog.LevelWarn))
			newPeer(b, "b", cb, withLogLevel(slog.LevelWarn))
			fillSAs(b, a, n)
			var mu sync.Mutex
			var holds []time.Duration
			listHold = func(d time.Duration) {
				mu.Lock()
				holds = append(holds, d)
				mu.Unlock()
			}
			b.Cleanup(func() { listHold = nil })
			ctx, cancel := context.WithCancel(b.Context())
			var hs atomic.Int64
			wait := func() {}
			if load == "handshakes" {
				wait = handshakeLoad(ctx, a.e, 4, &hs)
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				got := 0
				for c, err := range a.e.ListChildren(b.Context(), ListOptions{}) {
					if err != nil {
						b.Fatal(err)
					}
					if c.Name == "fill-net" {
						got++
					}
				}
				if got != n {
					b.Fatalf("listed %d children, want %d", got, n)
				}
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			elapsed := b.Elapsed()
			cancel()
			wait()
			mu.Lock()
			defer mu.Unlock()
			var sum time.Duration
			for _, d := range holds {
				sum += d
			}
			b.ReportMetric(float64(slices.Max(holds).Microseconds()), "hold-max-µs")
			b.ReportMetric(float64(sum.Microseconds())/float64(len(holds)), "hold-mean-µs")
			b.ReportMetric(float64(len(holds))/float64(b.N), "loop-calls/op")
			if load == "handshakes" {
				b.ReportMetric(float64(hs.Load())/elapsed.Seconds(), "handshakes/s")
			} else {
				// The process's CPU per child listed: the listing's own
				// cost, whatever else loads the machine.
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/child")
			}
		})
	}
}

// TestListChunks: a listing copies the SAs on the loop a chunk at a
// time (one call for the IDs, then at least one per listChunk SAs, more
// when a chunk takes longer than listBudget), lists them in the order of
// their IDs with their counters from the dataplane, and pages by ID.
func TestListChunks(t *testing.T) {
	const n = 2*listChunk + 76
	ca, _ := tunnelConfigs(t, 1)
	a := newPeer(t, "a", ca, withLogLevel(slog.LevelWarn))
	sas := fillSAs(t, a, n)
	var calls atomic.Int64
	listHold = func(time.Duration) { calls.Add(1) }
	t.Cleanup(func() { listHold = nil })
	var got []uint32
	for c, err := range a.e.ListChildren(t.Context(), ListOptions{}) {
		require.NoError(t, err)
		require.Empty(t, c.CounterErr)
		require.Equal(t, "fill", c.IKE)
		got = append(got, c.IKEID)
	}
	require.GreaterOrEqual(t, calls.Load(), int64(1+3))
	require.Len(t, got, n)
	require.True(t, slices.IsSorted(got))
	require.Equal(t, sas[0].id, got[0])

	var page []uint32
	for s, err := range a.e.ListIKESAs(t.Context(), ListOptions{After: sas[9].id, Limit: 5}) {
		require.NoError(t, err)
		page = append(page, s.ID)
	}
	require.Equal(t, []uint32{sas[10].id, sas[11].id, sas[12].id, sas[13].id, sas[14].id}, page)

	// Counting by state reads no counters and makes no text.
	ikes, kids, err := a.e.StateCounts(t.Context())
	require.NoError(t, err)
	require.Equal(t, map[IKEState]int{IKEEstablished: n}, ikes)
	require.Equal(t, map[ChildState]int{ChildInstalled: n}, kids)

	// Stopping early stops the copying.
	calls.Store(0)
	for range a.e.ListIKESAs(t.Context(), ListOptions{}) {
		break
	}
	require.Equal(t, int64(2), calls.Load())
}
