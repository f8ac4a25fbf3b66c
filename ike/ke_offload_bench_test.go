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
// packet waits), and the same for the initiator's loop (init-). Old and new code side by side:
//
//	go test -run '^$' -bench IKERekeys -count 6 ./ike
func BenchmarkIKERekeys(b *testing.B) {
	n := min(*benchTunnels, 1000)
	ca, cb := tunnelConfigs(b, n)
	var cpu, wall time.Duration
	var lat, ilat []time.Duration // the responder's loop, the initiator's
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
		// Each loop is sampled back to back by its own goroutine.
		stop := make(chan struct{})
		sample := func(e *Engine, out chan<- []time.Duration) {
			var l []time.Duration
			for {
				select {
				case <-stop:
					out <- l
					return
				default:
				}
				t := time.Now()
				if e.call(b.Context(), func() {}) != nil {
					out <- l
					return
				}
				l = append(l, time.Since(t))
			}
		}
		respSampled, initSampled := make(chan []time.Duration), make(chan []time.Duration)
		go sample(z.e, respSampled)
		go sample(a.e, initSampled)
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
		lat = append(lat, <-respSampled...)
		ilat = append(ilat, <-initSampled...)
		b.StopTimer()
		require.NoError(b, a.e.Close())
		require.NoError(b, z.e.Close())
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/wall.Seconds(), "rekeys/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/rekey")
	report := func(l []time.Duration, prefix string) {
		if len(l) > 0 {
			slices.Sort(l)
			b.ReportMetric(float64(l[len(l)-1].Microseconds())/1000, prefix+"loop-max-ms")
			b.ReportMetric(float64(l[len(l)*99/100].Microseconds())/1000, prefix+"loop-p99-ms")
		}
	}
	report(lat, "")
	report(ilat, "init-")
}
