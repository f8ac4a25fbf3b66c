// Package conformance is the one suite every kernelops backend must pass,
// in the style of testing/fstest.TestFS and x/net/nettest.TestConn: a
// backend's test calls Run with a factory, and every case gets a fresh
// Harness. A capability the backend lacks skips with the backend's own
// reason; one it claims is tested hard, and every operation behind a
// missing capability must fail with kernelops.ErrNotSupported.
//
// The same cases run outside `go test` against a live dataplane through
// RunCases (keyplane conformance --backend NAME).
package conformance

import (
	"context"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// TB is the part of testing.TB the suite uses. *testing.T satisfies it;
// under `go test` the factory receives the case's *testing.T, so it may
// type-assert to it. The command-line runner supplies its own.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Failed() bool
	Cleanup(func())
	Context() context.Context
}

// Harness is one case's view of a backend. The factory opens a fresh
// backend (see BackendOptions) and registers its Close with t.Cleanup.
type Harness struct {
	Backend kernelops.Backend

	// Local and Remote are the outer addresses SAs use: Traffic must be
	// able to carry ESP between them. Zero: 192.0.2.1 and 198.51.100.1.
	Local, Remote netip.Addr
	// LocalInner and RemoteInner are hosts inside the protected networks
	// that Traffic sends between (tunnel mode). Zero: 10.1.0.1, 10.2.0.1.
	LocalInner, RemoteInner netip.Addr

	// Traffic moves packets through the dataplane; nil skips the cases
	// that need traffic (counters, byte/packet lifetimes, acquire, idle).
	Traffic Traffic

	// Clock, when set, is the backend's fake clock: the suite advances it
	// instead of sleeping. Nil means real time (kernels): the suite then
	// uses second-scale lifetimes and waits for them.
	Clock *clock.Fake

	// IfName is an interface the suite may add addresses to; empty skips
	// the address cases.
	IfName string

	// Scale caps the bulk cases (10,000 SAs/policies by default) for slow
	// dataplanes, e.g. under emulation; 0 means full size.
	Scale int
}

// Traffic is a traffic source: it sends packets as a host inside
// LocalInner's network would, and returns once the dataplane has
// processed them (encrypted, dropped, or raised an acquire). A packet the
// dataplane drops is not an error; Send fails only when the source itself
// cannot send.
type Traffic interface {
	Send(ctx context.Context, f Flow, packets, size int) error
}

// Flow is the packets' 5-tuple.
type Flow struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// BackendOptions returns opts tuned for the suite: a quick idle scan and
// the default ranges. Factories pass their Open options through it.
func BackendOptions(opts kernelops.Options) kernelops.Options {
	if opts.IdleScanInterval == 0 {
		opts.IdleScanInterval = 100 * time.Millisecond
	}
	return opts.WithDefaults()
}

func (h *Harness) withDefaults() {
	def := func(a *netip.Addr, s string) {
		if !a.IsValid() {
			*a = netip.MustParseAddr(s)
		}
	}
	def(&h.Local, "192.0.2.1")
	def(&h.Remote, "198.51.100.1")
	def(&h.LocalInner, "10.1.0.1")
	def(&h.RemoteInner, "10.2.0.1")
}
