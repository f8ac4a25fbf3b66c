//go:build vpp

package vppharness

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/keyplane/keyplane/backends/vpp"
	"github.com/keyplane/keyplane/backends/vpp/vpptest"
	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// The test double's network: eth0 holds the suite's Local address and
// leads to Remote and the inner networks through a default route.
var (
	Local   = netip.MustParseAddr("192.0.2.1")
	Local6  = netip.MustParseAddr("2001:db8::1")
	Gateway = netip.MustParseAddr("192.0.2.254")
)

// DoubleConfig is the vpptest configuration the harness uses, with its
// sockets in dir.
func DoubleConfig(dir string) vpptest.Config {
	return vpptest.Config{
		APISocket:   filepath.Join(dir, "api.sock"),
		StatsSocket: filepath.Join(dir, "stats.sock"),
		Interfaces: []vpptest.Interface{
			{Name: "eth0", Up: true, Addrs: []netip.Prefix{netip.PrefixFrom(Local, 24), netip.PrefixFrom(Local6, 64)}},
			{Name: "eth1", Up: true},
			// A loopback interface holding 127.0.0.1/8, as an operator
			// creates with "create loopback interface": the suite's
			// address selection looks 127.0.0.1 up.
			{Name: "loop0", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}},
		},
		Routes: []vpptest.Route{
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), IfName: "eth0", Gateway: Gateway},
			{Prefix: netip.MustParsePrefix("::/0"), IfName: "eth0", Gateway: netip.MustParseAddr("2001:db8::fe")},
		},
	}
}

// Double is one harness over a fresh vpptest server.
type Double struct {
	Server  *vpptest.Server
	Backend kernelops.Backend
	Clock   *clock.Fake
	Dir     string
}

// NewDouble starts a vpptest server in a temporary directory and opens the
// backend on it with a fake clock. Both close at t's cleanup. extra adds
// or overrides backend parameters.
func NewDouble(t conformance.TB, extra map[string]string) (*Double, error) {
	dir, err := os.MkdirTemp("", "kp-vpp")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv := vpptest.New(DoubleConfig(dir))
	if err := srv.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(srv.Close)
	fc := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	params := map[string]string{
		vpp.ParamSocket:       filepath.Join(dir, "api.sock"),
		vpp.ParamStatsSocket:  filepath.Join(dir, "stats.sock"),
		vpp.ParamInterfaces:   "eth0",
		vpp.ParamKeepalive:    "20ms",
		vpp.ParamTimeout:      "2s",
		vpp.ParamReconnectMax: "100ms",
	}
	for k, v := range extra {
		params[k] = v
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := kernelops.Open(ctx, vpp.Name, conformance.BackendOptions(kernelops.Options{Clock: fc, Params: params}))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { b.Close() })
	return &Double{Server: srv, Backend: b, Clock: fc, Dir: dir}, nil
}

// Harness is the conformance view of the double: its traffic source
// pushes packets through the server's outbound SPD lookup.
func (d *Double) Harness() *conformance.Harness {
	return &conformance.Harness{
		Backend: d.Backend,
		Local:   Local,
		Remote:  netip.MustParseAddr("198.51.100.1"),
		Traffic: Traffic{S: d.Server, B: d.Backend},
		Clock:   d.Clock,
		IfName:  "eth1",
	}
}

// DoubleHarness is the factory conformance.Run takes.
func DoubleHarness(t conformance.TB) *conformance.Harness {
	d, err := NewDouble(t, nil)
	if err != nil {
		t.Fatalf("vpp test double: %v", err)
	}
	return d.Harness()
}

// Traffic sends the suite's packets through the test double, then has
// the backend read the stats segment once, as its scan does within
// scan-interval: with a fake clock that stands still between reads, the
// backend then sees the packets at the time they were sent.
type Traffic struct {
	S *vpptest.Server
	B kernelops.Backend
}

func (tr Traffic) Send(ctx context.Context, f conformance.Flow, packets, size int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := tr.S.Send(f.Src, f.Dst, f.Proto, f.SrcPort, f.DstPort, packets, size); err != nil {
		return err
	}
	if tr.B != nil {
		for _, err := range kernelops.ReadUsage(ctx, tr.B) {
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// LiveOptions configure a harness against a running VPP.
type LiveOptions struct {
	Socket      string            // VPP API socket; empty: /run/vpp/api.sock
	StatsSocket string            // stats socket; empty: /run/vpp/stats.sock
	Params      map[string]string // further backend parameters (e.g. interfaces)
	IfName      string            // an interface the address cases may use; empty skips them
	Local       netip.Addr        // outer addresses for the SA cases; zero: the suite's defaults
	Remote      netip.Addr
}

// Live returns a factory for conformance.Run or conformance.RunCases that
// opens the backend on a live VPP. It has no traffic source (the cases
// that need packets skip) and runs on real time.
func Live(o LiveOptions) func(t conformance.TB) *conformance.Harness {
	return func(t conformance.TB) *conformance.Harness {
		params := map[string]string{}
		for k, v := range o.Params {
			params[k] = v
		}
		if o.Socket != "" {
			params[vpp.ParamSocket] = o.Socket
		}
		if o.StatsSocket != "" {
			params[vpp.ParamStatsSocket] = o.StatsSocket
		}
		b, err := kernelops.Open(t.Context(), vpp.Name, conformance.BackendOptions(kernelops.Options{Params: params}))
		if err != nil {
			t.Fatalf("open VPP backend: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		return &conformance.Harness{Backend: b, Local: o.Local, Remote: o.Remote, IfName: o.IfName}
	}
}

// String names the live target for reports.
func (o LiveOptions) String() string {
	s := o.Socket
	if s == "" {
		s = vpp.DefaultSocket
	}
	return fmt.Sprintf("vpp at %s", s)
}
