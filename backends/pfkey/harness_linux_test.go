package pfkey_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/keyplane/keyplane/backends/pfkey"
	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/internal/kerneltest"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
)

// Inner (protected) hosts of the test networks: a /32 on each side's
// loopback, routed over the pair's veth.
var (
	innerA = netip.MustParseAddr("10.1.0.1")
	innerB = netip.MustParseAddr("10.2.0.1")
)

// site is two namespaces joined by a veth, with the inner hosts routed
// across, and a PF_KEY backend opened on each side's SAD and SPD.
type site struct {
	pair *lab.Pair
	a, b kernelops.Backend
}

func newSite(t *testing.T, opts kernelops.Options) *site {
	t.Helper()
	p := lab.NewPair(t)
	p.A.Exec(t, "ip", "addr", "add", innerA.String()+"/32", "dev", "lo")
	p.A.Exec(t, "ip", "route", "add", innerB.String()+"/32", "via", p.B4.String(), "src", innerA.String())
	p.B.Exec(t, "ip", "addr", "add", innerB.String()+"/32", "dev", "lo")
	p.B.Exec(t, "ip", "route", "add", innerA.String()+"/32", "via", p.A4.String(), "src", innerB.String())
	return &site{pair: p, a: openIn(t, p.A, opts), b: openIn(t, p.B, opts)}
}

// openIn opens the backend on ns's SAD and SPD through the netns
// parameter, the way a daemon would.
func openIn(t *testing.T, ns *lab.NS, opts kernelops.Options) kernelops.Backend {
	t.Helper()
	opts.Params = map[string]string{pfkey.ParamNetns: "/run/netns/" + ns.Name}
	b, err := kernelops.Open(context.Background(), pfkey.Name, conformance.BackendOptions(opts))
	lab.Need(t, "PF_KEY (af_key)", err)
	t.Cleanup(func() { b.Close() })
	return b
}

// udpTraffic sends UDP from a test namespace (kerneltest.Traffic, the
// traffic source every kernel backend's harness uses).
func udpTraffic(ns *lab.NS) conformance.Traffic { return &kerneltest.Traffic{NS: ns.Name} }

// TestConformance runs the shared suite against Linux af_key, each case
// on fresh namespaces, with real traffic between them.
func TestConformance(t *testing.T) {
	lab.RequireVM(t, "PF_KEY needs af_key")
	conformance.Run(t, func(tb conformance.TB) *conformance.Harness {
		return kerneltest.NewHarness(tb, kerneltest.Options{Backend: pfkey.Name})
	})
}
