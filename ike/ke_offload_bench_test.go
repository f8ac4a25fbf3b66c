package ike

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkIKERekeys brings up min(-bench.tunnels, 1000) IKE SAs between
// two engines on nokernel, then has the initiator rekey all of them at
// once (CREATE_CHILD_SA with an x25519 KE each): the responder answers
// every KE. It reports rekeys/s (wall clock, from the first request to the
// last IKE SA replaced on both sides), the process CPU per rekey, and how
// long the responder's loop took meanwhile to run a call (the longest and
// the 99th percentile, sampled back to back: what a status request or a
// packet waits). Old and new code side by side:
//
//	go test -run '^$' -bench IKERekeys -count 6 ./ike
func BenchmarkIKERekeys(b *testing.B) {
	n := min(*benchTunnels, 1000)
	ca, cb := tunnelConfigs(b, n)
	var cpu, wall time.Duration
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		a := newPeer(b, "a", ca, withLogLevel(slog.LevelWarn))
		z := newPeer(b, "b", cb, withLogLevel(slog.LevelWarn))
		require.NoError(b, bringUp(b.Context(), a.e, n, *benchInflight))
		// Each side's own SPIs of the SAs to be replaced.
		old := map[*Engine]map[uint64]bool{}
		for _, e := range []*Engine{a.e, z.e} {
			old[e] = map[uint64]bool{}
			require.NoError(b, e.call(b.Context(), func() {
				for spi, sa := range e.sas {
					if sa.state == ikeEstablished {
						old[e][spi] = true
					}
				}
			}))
			require.Len(b, old[e], n)
		}
		b.StartTimer()
		c0, t0 := cpuTime(), time.Now()
		require.NoError(b, a.e.call(b.Context(), func() {
			for spi := range old[a.e] {
				a.e.sas[spi].rekeyIKE()
			}
		}))
		// Done when every old SA is gone from both sides and n new ones
		// are established.
		stop := make(chan struct{})
		sampled := make(chan []time.Duration)
		go func() {
			var l []time.Duration
			for {
				select {
				case <-stop:
					sampled <- l
					return
				default:
				}
				t := time.Now()
				if z.e.call(b.Context(), func() {}) != nil {
					sampled <- l
					return
				}
				l = append(l, time.Since(t))
			}
		}()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var left, est int
			for _, e := range []*Engine{a.e, z.e} {
				require.NoError(b, e.call(b.Context(), func() {
					for spi, sa := range e.sas {
						switch {
						case old[e][spi]:
							left++
						case sa.state == ikeEstablished:
							est++
						}
					}
				}))
			}
			if left == 0 && est == 2*n {
				break
			}
			require.True(b, time.Now().Before(deadline), "rekeys not done: %d old SAs left, %d new established", left, est)
			time.Sleep(2 * time.Millisecond)
		}
		wall += time.Since(t0)
		cpu += cpuTime() - c0
		close(stop)
		lat = append(lat, <-sampled...)
		b.StopTimer()
		require.NoError(b, a.e.Close())
		require.NoError(b, z.e.Close())
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/wall.Seconds(), "rekeys/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/rekey")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "loop-max-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "loop-p99-ms")
	}
}
