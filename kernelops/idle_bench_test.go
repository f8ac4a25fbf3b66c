package kernelops_test

import (
	"context"
	"iter"
	"net/netip"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

const benchSAs = 10000

// benchModel fills a nokernel model with n watched SAs, half of them used.
func benchModel(b *testing.B, n int) (*nokernel.Backend, []kernelops.SAID) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m, err := nokernel.Open(context.Background(), kernelops.Options{Clock: clk, IdleScanInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	ops := make([]kernelops.Op, n)
	ids := make([]kernelops.SAID, n)
	for i := range ops {
		sa := &kernelops.SA{
			ID:         kernelops.SAID{Src: local, Dst: remote, SPI: 0x10000 + uint32(i), Proto: kernelops.ProtoESP},
			Mode:       kernelops.ModeTunnel,
			ReqID:      1,
			Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make(kernelops.Key, 20)},
		}
		ops[i] = kernelops.Op{Kind: kernelops.OpAddSA, SA: sa}
		ids[i] = sa.ID
	}
	if err := m.Apply(context.Background(), ops); err != nil {
		b.Fatal(err)
	}
	return m, ids
}

// perSA reads usage the way to beat: one GetSA per watched SA.
func perSA(m *nokernel.Backend, ids []kernelops.SAID) func(context.Context) iter.Seq2[kernelops.Usage, error] {
	return func(ctx context.Context) iter.Seq2[kernelops.Usage, error] {
		return func(yield func(kernelops.Usage, error) bool) {
			for _, id := range ids {
				e, err := m.GetSA(ctx, id)
				if err != nil {
					yield(kernelops.Usage{}, err)
					return
				}
				if !yield(kernelops.UsageOf(e), nil) {
					return
				}
			}
		}
	}
}

func benchScan(b *testing.B, read func(*nokernel.Backend, []kernelops.SAID) func(context.Context) iter.Seq2[kernelops.Usage, error]) {
	m, ids := benchModel(b, benchSAs)
	events := 0
	d := kernelops.NewIdleScanner(m.Clock(), read(m, ids), func(*kernelops.IdleEvent) { events++ })
	for _, id := range ids {
		d.Watch(id, time.Minute)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := d.Scan(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if d.Len() != benchSAs {
		b.Fatalf("watching %d after the scans, want %d", d.Len(), benchSAs)
	}
	b.ReportMetric(float64(benchSAs), "SAs/scan")
}

// BenchmarkScan scans 10,000 SAs with one GetSA per SA (the baseline) and
// with one bulk usage read per scan; `benchstat -col /read` compares them.
func BenchmarkScan(b *testing.B) {
	b.Run("read=getsa-per-sa", func(b *testing.B) { benchScan(b, perSA) })
	b.Run("read=bulk", func(b *testing.B) {
		benchScan(b, func(m *nokernel.Backend, _ []kernelops.SAID) func(context.Context) iter.Seq2[kernelops.Usage, error] {
			return func(ctx context.Context) iter.Seq2[kernelops.Usage, error] { return kernelops.ReadUsage(ctx, m) }
		})
	})
}
