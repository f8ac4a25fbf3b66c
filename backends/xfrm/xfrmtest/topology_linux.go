package xfrmtest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/keyplane/keyplane/conformance"
	"github.com/vishvananda/netns"
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
// routes. It skips t without root.
func NewTopology(t conformance.TB) *Topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("xfrmtest: needs root for network namespaces (uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("xfrmtest: iproute2's ip not found: %v", err)
	}
	n := seq.Add(1)
	tp := &Topology{
		A: fmt.Sprintf("kpx-%d-%d-a", os.Getpid(), n), B: fmt.Sprintf("kpx-%d-%d-b", os.Getpid(), n),
		IfA: "kpv-a", IfB: "kpv-b",
		Local: netip.MustParseAddr("10.77.0.1"), Remote: netip.MustParseAddr("10.77.0.2"),
		LocalInner: netip.MustParseAddr("10.1.0.1"), RemoteInner: netip.MustParseAddr("10.2.0.1"),
	}
	for _, ns := range []string{tp.A, tp.B} {
		_, _ = ip("netns", "delete", ns) // a leftover of a dead process with our pid
		if _, err := ip("netns", "add", ns); err != nil {
			t.Fatalf("xfrmtest: %v", err)
		}
		ns := ns
		t.Cleanup(func() { removeNS(ns) })
	}
	steps := [][]string{
		{"link", "add", tp.IfA, "netns", tp.A, "type", "veth", "peer", "name", tp.IfB, "netns", tp.B},
		{"-n", tp.A, "link", "set", "lo", "up"},
		{"-n", tp.B, "link", "set", "lo", "up"},
		{"-n", tp.A, "addr", "add", tp.Local.String() + "/24", "dev", tp.IfA},
		{"-n", tp.B, "addr", "add", tp.Remote.String() + "/24", "dev", tp.IfB},
		{"-n", tp.A, "addr", "add", tp.LocalInner.String() + "/32", "dev", "lo"},
		{"-n", tp.B, "addr", "add", tp.RemoteInner.String() + "/32", "dev", "lo"},
		{"-n", tp.A, "link", "set", tp.IfA, "up"},
		{"-n", tp.B, "link", "set", tp.IfB, "up"},
		{"-n", tp.A, "route", "add", tp.RemoteInner.String() + "/32", "via", tp.Remote.String(), "src", tp.LocalInner.String()},
		{"-n", tp.B, "route", "add", tp.LocalInner.String() + "/32", "via", tp.Local.String(), "src", tp.RemoteInner.String()},
	}
	for _, s := range steps {
		if _, err := ip(s...); err != nil {
			t.Fatalf("xfrmtest: %v", err)
		}
	}
	return tp
}

func ip(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// removeNS kills what still runs in ns and deletes it.
func removeNS(ns string) {
	if out, err := ip("netns", "pids", ns); err == nil {
		for f := range strings.FieldsSeq(out) {
			if pid := atoiPid(f); pid > 0 && pid != os.Getpid() {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	}
	_, _ = ip("netns", "delete", ns)
}

func atoiPid(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
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
