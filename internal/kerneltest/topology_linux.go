package kerneltest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/keyplane/keyplane/conformance"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Topology is two namespaces, A (where the backend under test runs) and B
// (its peer), joined by a veth pair:
//
//	A: IfA Local/24, lo LocalInner/32    route RemoteInner via Remote
//	B: IfB Remote/24, lo RemoteInner/32  route LocalInner via Local
//
// Tunnel-mode SAs between Local and Remote carry traffic between the
// inner addresses. Everything is removed in t.Cleanup.
type Topology struct {
	A, B          string // namespace names, as `ip netns` lists them
	IfA, IfB      string
	Local, Remote netip.Addr
	LocalInner    netip.Addr
	RemoteInner   netip.Addr
}

var seq atomic.Uint32

// Path returns the bind-mount path of namespace ns (for the backend's
// "netns" parameter).
func Path(ns string) string { return "/run/netns/" + ns }

// NewTopology creates the namespaces, the veth pair, the addresses and
// routes, over netlink (no process spawned: cheap under emulation). It
// skips t without root.
func NewTopology(t conformance.TB) *Topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("kerneltest: needs root for network namespaces (uid %d)", os.Geteuid())
	}
	n := seq.Add(1)
	tp := &Topology{
		A: fmt.Sprintf("kpx-%d-%d-a", os.Getpid(), n), B: fmt.Sprintf("kpx-%d-%d-b", os.Getpid(), n),
		IfA: "kpv-a", IfB: "kpv-b",
		Local: netip.MustParseAddr("10.77.0.1"), Remote: netip.MustParseAddr("10.77.0.2"),
		LocalInner: netip.MustParseAddr("10.1.0.1"), RemoteInner: netip.MustParseAddr("10.2.0.1"),
	}
	ha, err := newNamedNS(tp.A)
	if err != nil {
		t.Fatalf("kerneltest: namespace %s: %v", tp.A, err)
	}
	t.Cleanup(func() { removeNS(tp.A, ha) })
	hb, err := newNamedNS(tp.B)
	if err != nil {
		t.Fatalf("kerneltest: namespace %s: %v", tp.B, err)
	}
	t.Cleanup(func() { removeNS(tp.B, hb) })
	if err := tp.build(ha, hb); err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	return tp
}

func (tp *Topology) build(ha, hb netns.NsHandle) error {
	a, err := netlink.NewHandleAt(ha, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := netlink.NewHandleAt(hb, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer b.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tp.IfA}, PeerName: tp.IfB, PeerNamespace: netlink.NsFd(int(hb))}
	if err := a.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s/%s: %w", tp.IfA, tp.IfB, err)
	}
	side := func(h *netlink.Handle, ifname string, outer, inner, peerOuter, peerInner netip.Addr) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		dev, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(dev, addr(netip.PrefixFrom(outer, 24))); err != nil {
			return fmt.Errorf("address %s on %s: %w", outer, ifname, err)
		}
		if err := h.AddrAdd(lo, addr(netip.PrefixFrom(inner, 32))); err != nil {
			return fmt.Errorf("address %s on lo: %w", inner, err)
		}
		for _, l := range []netlink.Link{lo, dev} {
			if err := h.LinkSetUp(l); err != nil {
				return fmt.Errorf("up %s: %w", l.Attrs().Name, err)
			}
		}
		r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: ipnet(netip.PrefixFrom(peerInner, 32)),
			Gw: net.IP(peerOuter.AsSlice()), Src: net.IP(inner.AsSlice())}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("route to %s: %w", peerInner, err)
		}
		return nil
	}
	if err := side(a, tp.IfA, tp.Local, tp.LocalInner, tp.Remote, tp.RemoteInner); err != nil {
		return err
	}
	return side(b, tp.IfB, tp.Remote, tp.RemoteInner, tp.Local, tp.LocalInner)
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func addr(p netip.Prefix) *netlink.Addr { return &netlink.Addr{IPNet: ipnet(p)} }

// newNamedNS creates a network namespace bound at /run/netns/name, as
// `ip netns add` does, without leaving the calling thread in it.
func newNamedNS(name string) (h netns.NsHandle, err error) {
	_ = netns.DeleteNamed(name) // a leftover of a dead process with our pid
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), err
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			err = errors.Join(err, rerr) // the thread stays locked and is retired
		} else {
			runtime.UnlockOSThread()
		}
		orig.Close()
	}()
	return netns.NewNamed(name)
}

// removeNS kills what still runs in the namespace and deletes it.
func removeNS(name string, h netns.NsHandle) {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for f := range strings.FieldsSeq(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	}
	h.Close()
	_ = netns.DeleteNamed(name)
}

// Run runs a command inside namespace ns and returns its combined output.
func (tp *Topology) Run(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Do runs fn on a locked OS thread inside namespace ns; sockets created
// in fn stay in ns.
func Do(ns string, fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			err = errors.Join(err, rerr) // the thread stays locked and is retired
		} else {
			runtime.UnlockOSThread()
		}
		orig.Close()
	}()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter namespace %s: %w", ns, err)
	}
	return fn()
}
