package nokernel_test

import (
	"flag"
	"net/netip"
	"runtime"
	"testing"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/internal/memtest"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

var heapProfile = flag.String("bench.heapprofile", "", "BenchmarkModelMemory: write the heap profile here while the SAs and policies are in")

// BenchmarkModelMemory reports the model's live heap per SA and per policy
// for children as the IKE engine installs them, all between one pair of
// addresses (as BenchmarkTunnelMemory in ike): an inbound SA filling an
// AllocSPI reservation (window 32) and an outbound one (no window), both
// AES-GCM-16-256 with a direction, and in, out and fwd tunnel policies of
// one template each. The SAs carry no lifetimes: set or not, they cost
// the same, kept only by the front end's tracking (kernelops), which is
// made for every SA and counted here too.
func BenchmarkModelMemory(b *testing.B) {
	const children = 10000
	var perSA, perPolicy float64
	for b.Loop() {
		b.StopTimer()
		m, err := nokernel.Open(b.Context(), kernelops.Options{Clock: clock.NewFake(epoch)})
		if err != nil {
			b.Fatal(err)
		}
		base := memtest.LiveHeap()
		b.StartTimer()
		for i := range children {
			reqid := uint32(i + 1)
			spi, err := m.AllocSPI(b.Context(), kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP, ReqID: reqid})
			if err != nil {
				b.Fatal(err)
			}
			for _, dir := range []kernelops.Direction{kernelops.DirIn, kernelops.DirOut} {
				sa := &kernelops.SA{
					ID:           kernelops.SAID{Src: remote, Dst: local, SPI: spi, Proto: kernelops.ProtoESP},
					Mode:         kernelops.ModeTunnel,
					ReqID:        reqid,
					Encryption:   kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 256, Key: make(kernelops.Key, 36)},
					ReplayWindow: 32,
					Dir:          dir,
				}
				if dir == kernelops.DirOut {
					sa.ID = kernelops.SAID{Src: local, Dst: remote, SPI: 0xc0000000 + uint32(i), Proto: kernelops.ProtoESP}
					sa.ReplayWindow = 0
				}
				if err := m.AddSA(b.Context(), sa); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		sas := memtest.LiveHeap()
		b.StartTimer()
		for i := range children {
			reqid := uint32(i + 1)
			mine := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
			theirs := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), 32)
			for _, dir := range []kernelops.Direction{kernelops.DirIn, kernelops.DirOut, kernelops.DirFwd} {
				p := &kernelops.Policy{Selector: kernelops.Selector{Src: theirs, Dst: mine}, Dir: dir, Action: kernelops.ActionIPsec,
					Templates: []kernelops.Template{{Src: remote, Dst: local, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}
				if dir == kernelops.DirOut {
					p.Selector.Src, p.Selector.Dst = mine, theirs
					p.Templates[0].Src, p.Templates[0].Dst = local, remote
				}
				if err := m.AddPolicy(b.Context(), p); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		pols := memtest.LiveHeap()
		memtest.WriteHeapProfile(b, *heapProfile)
		perSA += float64(sas-base) / (2 * children)
		perPolicy += float64(pols-sas) / (3 * children)
		runtime.KeepAlive(m)
		if err := m.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(perSA/float64(b.N), "B/SA")
	b.ReportMetric(perPolicy/float64(b.N), "B/policy")
}
