// Package nokerneltest connects the nokernel model to the conformance
// suite: a traffic source that injects simulated packets, and a harness
// factory for conformance.Run and the command-line runner. It lives apart
// from nokernel so the model itself never links the testing package.
package nokerneltest

import (
	"context"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// Traffic returns a conformance.Traffic that sends each packet of a flow
// through b.Inject as outbound traffic. Dropped packets are not errors.
func Traffic(b *nokernel.Backend) conformance.Traffic { return traffic{b} }

type traffic struct{ b *nokernel.Backend }

func (t traffic) Send(ctx context.Context, f conformance.Flow, packets, size int) error {
	p := nokernel.Packet{Dir: kernelops.DirOut, Src: f.Src, Dst: f.Dst, Proto: f.Proto,
		SrcPort: f.SrcPort, DstPort: f.DstPort, Len: size}
	for range packets {
		if _, err := t.b.Inject(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// Epoch is where the harness's fake clocks start.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// IfName is the interface the harness gives the suite: it carries the
// harness's Local address, and the default route goes through it. It
// offloads nothing, so the suite sees offload refused and auto falling
// back to software.
const IfName = "eth0"

// NewHarness returns a harness factory: every case gets a fresh model on
// a fake clock with IfName and a default route, and a traffic source.
// params are passed to Open (nil is fine).
func NewHarness(params map[string]string) func(t conformance.TB) *conformance.Harness {
	return func(t conformance.TB) *conformance.Harness {
		t.Helper()
		clk := clock.NewFake(Epoch)
		opts := conformance.BackendOptions(kernelops.Options{Clock: clk, Params: params})
		b, err := nokernel.Open(t.Context(), opts)
		if err != nil {
			t.Fatalf("open nokernel: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		h := &conformance.Harness{Backend: b, Traffic: Traffic(b), Clock: clk, IfName: IfName,
			Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.1")}
		if _, err := b.Net().AddInterface(IfName, netip.PrefixFrom(h.Local, 24)); err != nil {
			t.Fatalf("add %s: %v", IfName, err)
		}
		if err := b.Net().AddRoute(nokernel.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"),
			Gateway: netip.MustParseAddr("192.0.2.254"), IfName: IfName}); err != nil {
			t.Fatalf("default route: %v", err)
		}
		return h
	}
}
