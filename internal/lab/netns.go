package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// NS is a named network namespace created for a test (it appears in
// `ip netns list` as Name) and removed in t.Cleanup.
type NS struct {
	Name   string
	Handle netns.NsHandle
}

// seq makes names unique within the process; the pid makes them unique
// between test binaries running at the same time.
var seq atomic.Uint32

func next() uint32 { return seq.Add(1) }

// ipCmd returns the path of iproute2's ip, failing t when it is missing.
func ipCmd(t TB) string {
	t.Helper()
	p, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("lab: iproute2's ip not found (apt-get install iproute2): %v", err)
	}
	return p
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// NewNS creates a network namespace with a unique name, brings its loopback
// up, and removes it in t.Cleanup: processes still inside it are killed, the
// handle closed and the name deleted. It skips (host) or fails (guest) when
// not root.
func NewNS(t TB) *NS {
	t.Helper()
	RequireRoot(t)
	ip := ipCmd(t)
	name := fmt.Sprintf("kp-%d-%d", os.Getpid(), next())
	if _, err := run(ip, "netns", "add", name); err != nil {
		// A namespace left behind by a dead process that had our pid:
		// nothing alive owns the name, so take it over.
		if _, statErr := os.Stat("/run/netns/" + name); statErr != nil {
			t.Fatalf("lab: %v", err)
		}
		_, _ = run(ip, "netns", "delete", name)
		if _, err := run(ip, "netns", "add", name); err != nil {
			t.Fatalf("lab: %v", err)
		}
	}
	ns := &NS{Name: name, Handle: netns.None()}
	t.Cleanup(func() { ns.remove(t, ip) })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("lab: open namespace %s: %v", name, err)
	}
	ns.Handle = h
	if _, err := run(ip, "-n", name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("lab: %v", err)
	}
	return ns
}

// remove kills what still runs in the namespace, closes the handle and
// deletes the name. Errors are logged: cleanup must go on.
func (ns *NS) remove(t TB, ip string) {
	if out, err := run(ip, "netns", "pids", ns.Name); err == nil {
		var pids []int
		for f := range strings.FieldsSeq(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				pids = append(pids, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		// Give the killed processes a moment to leave the namespace.
		for deadline := time.Now().Add(2 * time.Second); len(pids) > 0 && time.Now().Before(deadline); {
			alive := pids[:0]
			for _, pid := range pids {
				if syscall.Kill(pid, 0) == nil {
					alive = append(alive, pid)
				}
			}
			pids = alive
			if len(pids) > 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if ns.Handle.IsOpen() {
		_ = ns.Handle.Close()
	}
	if _, err := run(ip, "netns", "delete", ns.Name); err != nil {
		t.Logf("lab: cleanup: %v", err)
	}
}

// Do runs fn on a locked OS thread switched into the namespace, and switches
// back afterwards. Sockets and netlink handles created in fn live in the
// namespace and stay there after Do returns. Goroutines that fn starts do not
// inherit the namespace. If the thread cannot be switched back it stays locked,
// so the runtime discards it when the goroutine ends.
func (ns *NS) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: current namespace: %w", err)
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			err = errors.Join(err, fmt.Errorf("lab: back to the original namespace: %w", rerr))
		} else {
			runtime.UnlockOSThread()
		}
		_ = orig.Close()
	}()
	if err := netns.Set(ns.Handle); err != nil {
		return fmt.Errorf("lab: enter namespace %s: %w", ns.Name, err)
	}
	return fn()
}

// Command returns an exec.Cmd that runs args inside the namespace (through
// `ip netns exec`), for processes the test starts and stops itself.
func (ns *NS) Command(args ...string) *exec.Cmd {
	ip, err := exec.LookPath("ip")
	if err != nil {
		ip = "ip"
	}
	return exec.Command(ip, append([]string{"netns", "exec", ns.Name}, args...)...)
}

// Run runs args inside the namespace and returns the combined output; the
// error includes the output.
func (ns *NS) Run(args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("lab: Run: no command")
	}
	out, err := ns.Command(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in netns %s: %s: %w: %s", ns.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Exec runs args inside the namespace, fails t on error, and returns the
// combined output.
func (ns *NS) Exec(t TB, args ...string) string {
	t.Helper()
	out, err := ns.Run(args...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return out
}

// Pair is two namespaces joined by a veth pair, both ends up and addressed:
// A4/B4 in 10.77.x.0/24 and A6/B6 in fd77:x::/64 (no DAD, usable at once).
type Pair struct {
	A, B     *NS
	IfA, IfB string // veth ends: IfA in A, IfB in B
	A4, B4   netip.Addr
	A6, B6   netip.Addr
}

// Prefix4 and Prefix6 are the prefixes of the pair's link.
func (p *Pair) Prefix4() netip.Prefix { return netip.PrefixFrom(p.A4, 24).Masked() }
func (p *Pair) Prefix6() netip.Prefix { return netip.PrefixFrom(p.A6, 64).Masked() }

// NewPair creates two namespaces joined by a veth pair, addressed and up.
func NewPair(t TB) *Pair {
	t.Helper()
	a, b := NewNS(t), NewNS(t)
	ip := ipCmd(t)
	x := next()%250 + 1
	p := &Pair{
		A: a, B: b,
		IfA: "veth-a", IfB: "veth-b",
		A4: netip.AddrFrom4([4]byte{10, 77, byte(x), 1}),
		B4: netip.AddrFrom4([4]byte{10, 77, byte(x), 2}),
		A6: netip.MustParseAddr(fmt.Sprintf("fd77:%x::1", x)),
		B6: netip.MustParseAddr(fmt.Sprintf("fd77:%x::2", x)),
	}
	steps := [][]string{
		{"link", "add", p.IfA, "netns", a.Name, "type", "veth", "peer", "name", p.IfB, "netns", b.Name},
		{"-n", a.Name, "addr", "add", p.A4.String() + "/24", "dev", p.IfA},
		{"-n", b.Name, "addr", "add", p.B4.String() + "/24", "dev", p.IfB},
		{"-n", a.Name, "addr", "add", p.A6.String() + "/64", "dev", p.IfA, "nodad"},
		{"-n", b.Name, "addr", "add", p.B6.String() + "/64", "dev", p.IfB, "nodad"},
		{"-n", a.Name, "link", "set", p.IfA, "up"},
		{"-n", b.Name, "link", "set", p.IfB, "up"},
	}
	for _, s := range steps {
		if _, err := run(ip, s...); err != nil {
			t.Fatalf("lab: pair: %v", err)
		}
	}
	return p
}
