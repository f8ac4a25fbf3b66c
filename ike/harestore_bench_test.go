package ike

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// jsonSink is a test StateSink that costs what package ha's does on the
// engine's loop before its store queues the record: each state as JSON.
type jsonSink struct{ n int }

func (s *jsonSink) put(v any) {
	if b, err := json.Marshal(v); err == nil {
		s.n += len(b)
	}
}
func (s *jsonSink) IKEChanged(st *HAIKE)     { s.put(st) }
func (s *jsonSink) IKEGone(uint64)           {}
func (s *jsonSink) ChildChanged(st *HAChild) { s.put(st) }
func (s *jsonSink) ChildGone(uint32)         {}

// BenchmarkRestore: one takeover of an IKE SA with 1,000 children on
// nokernel, with a state sink, an event subscriber and logging at info,
// as the HA daemon runs it. The restore's parts are reported per op
// (sas-ms, sync-ms, policies-ms; bookkeeping-ms, the engine's for the
// children installed; after-ms, from the last batch's policies to the
// end, while the engine answers no IKE). Compare two builds with
// benchstat.
func BenchmarkRestore(b *testing.B) {
	const n = 1000
	sa, sb := pairSides(b)
	children := make([]*HAChild, n)
	for i := range children {
		c := haTestChild("b-net", 0xc1000000+uint32(i), 0xc2000000+uint32(i))
		a := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
		r := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		c.LocalTS, c.RemoteTS = []HATS{{Start: a, End: a}}, []HATS{{Start: r, End: r}}
		c.Est = time.Now().Add(-time.Minute)
		children[i] = c
	}
	var sum RestoreStats
	for b.Loop() {
		b.StopTimer()
		p := newPeer(b, "b", sb.config(b, "b"), withLogLevel(slog.LevelInfo))
		if err := p.e.SetStateSink(b.Context(), &jsonSink{}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var st RestoreStats
		if err := p.e.Restore(b.Context(), haTestIKE(sb, sa), children, RestoreOptions{SeqMargin: 1000, Stats: &st}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if st.Children != n {
			b.Fatalf("%d children restored, want %d", st.Children, n)
		}
		sum.Add(st)
		p.e.Close()
		p.b.Close()
		b.StartTimer()
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(sum.SAs), "sas-ms")
	b.ReportMetric(ms(sum.Sync), "sync-ms")
	b.ReportMetric(ms(sum.Policies), "policies-ms")
	b.ReportMetric(ms(sum.Report), "bookkeeping-ms")
	b.ReportMetric(ms(sum.Last), "after-ms")
}
