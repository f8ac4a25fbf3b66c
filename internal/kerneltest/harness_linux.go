package kerneltest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/kernelops"
)

// Options tune NewHarness.
type Options struct {
	// Backend is the registered backend to open: "xfrm" or "pfkey".
	// Empty means "xfrm".
	Backend string
	// Open are the backend's options; conformance.BackendOptions is
	// applied and Params["netns"] set to namespace A.
	Open kernelops.Options
	// Scale caps the suite's bulk cases (Harness.Scale).
	Scale int
}

// NewHarness builds a fresh topology and opens o.Backend in its
// namespace A: a conformance.Harness factory for conformance.Run and
// conformance.RunCases. The importing binary must carry that backend
// (import backends/xfrm or backends/pfkey).
func NewHarness(t conformance.TB, o Options) *conformance.Harness {
	t.Helper()
	tp := NewTopology(t)
	b := tp.OpenBackend(t, tp.A, o.Backend, o.Open)
	return &conformance.Harness{
		Backend: b,
		Local:   tp.Local, Remote: tp.Remote,
		LocalInner: tp.LocalInner, RemoteInner: tp.RemoteInner,
		Traffic: &Traffic{NS: tp.A},
		IfName:  tp.IfA,
		Scale:   o.Scale,
	}
}

// Open opens the xfrm backend in namespace ns and closes it in t.Cleanup.
func (tp *Topology) Open(t conformance.TB, ns string, opts kernelops.Options) kernelops.Backend {
	t.Helper()
	return tp.OpenBackend(t, ns, "xfrm", opts)
}

// OpenBackend opens the named kernel backend in namespace ns (through its
// "netns" parameter) and closes it in t.Cleanup.
func (tp *Topology) OpenBackend(t conformance.TB, ns, backend string, opts kernelops.Options) kernelops.Backend {
	t.Helper()
	if backend == "" {
		backend = "xfrm"
	}
	opts = conformance.BackendOptions(opts)
	params := map[string]string{"netns": Path(ns)}
	for k, v := range opts.Params {
		params[k] = v
	}
	opts.Params = params
	b, err := kernelops.Open(t.Context(), backend, opts)
	if err != nil {
		t.Fatalf("kerneltest: open the %s backend in %s: %v", backend, ns, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// Traffic is a conformance.Traffic that sends UDP datagrams from inside
// namespace NS. The kernel runs the XFRM output path (policy lookup,
// acquire, encryption and counters) within sendmsg, so the packets have
// been processed when Send returns.
type Traffic struct {
	NS string
}

// Send implements conformance.Traffic. size is the UDP payload length.
// A datagram the dataplane drops (no SA yet, an expired SA) is not an
// error.
func (tr *Traffic) Send(ctx context.Context, f conformance.Flow, packets, size int) error {
	if f.Proto != 17 {
		return fmt.Errorf("kerneltest: traffic protocol %d: only UDP (17)", f.Proto)
	}
	if !f.Src.IsValid() || !f.Dst.IsValid() {
		return fmt.Errorf("kerneltest: flow %v has no addresses", f)
	}
	var conn *net.UDPConn
	err := Do(tr.NS, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		}}
		pc, err := lc.ListenPacket(ctx, "udp", netip.AddrPortFrom(f.Src, f.SrcPort).String())
		if err != nil {
			return err
		}
		conn = pc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		return fmt.Errorf("kerneltest: traffic socket in %s: %w", tr.NS, err)
	}
	defer conn.Close()
	payload := make([]byte, size)
	dst := netip.AddrPortFrom(f.Dst, f.DstPort)
	for i := range packets {
		if err := ctx.Err(); err != nil {
			return err
		}
		if size > 0 {
			payload[0] = byte(i)
		}
		if _, err := conn.WriteToUDPAddrPort(payload, dst); err != nil {
			// Drops are the dataplane's business (EAGAIN while an acquire
			// is pending, EPERM from a block policy, ...).
			var errno syscall.Errno
			if !errors.As(err, &errno) {
				return fmt.Errorf("kerneltest: send: %w", err)
			}
		}
	}
	return nil
}
