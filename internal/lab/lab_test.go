package lab

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

func TestRequireVM(t *testing.T) {
	for _, tc := range []struct {
		env     string
		reached bool
	}{{"1", true}, {"", false}, {"0", false}} {
		t.Run("env="+tc.env, func(t *testing.T) {
			t.Setenv(EnvVM, tc.env)
			if InVM() != tc.reached {
				t.Fatalf("InVM() = %v with %s=%q", InVM(), EnvVM, tc.env)
			}
			reached := false
			t.Run("inner", func(t *testing.T) {
				RequireVM(t, "test of RequireVM")
				reached = true
			})
			if reached != tc.reached {
				t.Fatalf("RequireVM returned = %v, want %v", reached, tc.reached)
			}
		})
	}
}

func TestNeed(t *testing.T) {
	t.Setenv(EnvVM, "")
	reached := false
	t.Run("nil", func(t *testing.T) { Need(t, "nothing", nil); reached = true })
	if !reached {
		t.Fatal("Need with a nil error stopped the test")
	}
	reached = false
	t.Run("host", func(t *testing.T) {
		Need(t, "ESP", errors.New("not here"))
		reached = true
	})
	if reached {
		t.Fatal("Need with an error did not stop the test on the host")
	}
}

func openNS(t *testing.T) netns.NsHandle {
	t.Helper()
	h, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestNewNSAndCleanup(t *testing.T) {
	RequireRoot(t)
	var name string
	var pid int
	t.Run("create", func(t *testing.T) {
		ns := NewNS(t)
		name = ns.Name
		if !strings.HasPrefix(name, "kp-") || !strings.Contains(name, "-") {
			t.Fatalf("unexpected name %q", name)
		}
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			t.Fatalf("namespace not visible to ip netns: %v", err)
		}
		if ns.Handle.Equal(openNS(t)) {
			t.Fatal("new namespace handle equals the test's own namespace")
		}
		out := ns.Exec(t, "ip", "-o", "link", "show", "lo")
		if !strings.Contains(out, "UP") {
			t.Fatalf("lo not up in %s: %s", name, out)
		}
		// A process left running in the namespace is killed at cleanup.
		cmd := ns.Command("sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid = cmd.Process.Pid
		go cmd.Wait() // reap it so it does not linger as a zombie
		// Wait until `ip netns exec` has entered the namespace.
		for deadline := time.Now().Add(10 * time.Second); ; {
			out, _ := run("ip", "netns", "pids", name)
			if slices.Contains(strings.Fields(out), strconv.Itoa(pid)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d not in namespace %s after 10s", pid, name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	if name == "" {
		t.Fatal("subtest did not create a namespace")
	}
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still present after cleanup (stat err %v)", name, err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := syscall.Kill(pid, 0); err == nil {
		// It might be an unreaped zombie; check its state.
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if !bytes.Contains(st, []byte(") Z")) {
			t.Fatalf("process %d started in the namespace survived cleanup: %s", pid, st)
		}
	}
}

func TestNamesUnique(t *testing.T) {
	RequireRoot(t)
	a, b := NewNS(t), NewNS(t)
	if a.Name == b.Name {
		t.Fatalf("two namespaces named %q", a.Name)
	}
	if a.Handle.Equal(b.Handle) {
		t.Fatal("two namespaces share a handle")
	}
}

func TestDo(t *testing.T) {
	RequireRoot(t)
	ns := NewNS(t)
	before := openNS(t)
	var ifs []net.Interface
	err := ns.Do(func() error {
		var err error
		ifs, err = net.Interfaces()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" || ifs[0].Flags&net.FlagUp == 0 {
		t.Fatalf("interfaces inside a new namespace = %+v, want only lo, up", ifs)
	}
	// The error of fn is returned and the thread is back where it was.
	want := errors.New("boom")
	if err := ns.Do(func() error { return want }); !errors.Is(err, want) {
		t.Fatalf("Do returned %v, want %v", err, want)
	}
	after := openNS(t)
	if !before.Equal(after) {
		t.Fatal("Do left the goroutine in another namespace")
	}
}

func TestPair(t *testing.T) {
	RequireRoot(t)
	p := NewPair(t)
	if p.Prefix4() != netip.PrefixFrom(p.B4, 24).Masked() || !p.Prefix6().Contains(p.B6) {
		t.Fatalf("prefixes %v %v do not hold %v %v", p.Prefix4(), p.Prefix6(), p.B4, p.B6)
	}
	out := p.A.Exec(t, "ip", "-o", "addr", "show", "dev", p.IfA)
	if !strings.Contains(out, p.A4.String()+"/24") || !strings.Contains(out, p.A6.String()+"/64") {
		t.Fatalf("addresses missing on %s: %s", p.IfA, out)
	}
	for _, addrs := range [][2]netip.Addr{{p.A4, p.B4}, {p.A6, p.B6}} {
		udpExchange(t, p, addrs[0], addrs[1])
	}
}

// udpExchange sends a datagram from src in A to dst in B and expects it back.
func udpExchange(t *testing.T, p *Pair, src, dst netip.Addr) {
	t.Helper()
	var srv net.PacketConn
	if err := p.B.Do(func() (err error) {
		srv, err = net.ListenPacket("udp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 64)
		n, from, err := srv.ReadFrom(buf)
		if err == nil {
			srv.WriteTo(buf[:n], from)
		}
	}()
	var cli *net.UDPConn
	if err := p.A.Do(func() (err error) {
		cli, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			net.UDPAddrFromAddrPort(srv.LocalAddr().(*net.UDPAddr).AddrPort()))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cli.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := cli.Write([]byte("ping " + dst.String())); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := cli.Read(buf)
	if err != nil {
		t.Fatalf("%v -> %v over the veth pair: %v", src, dst, err)
	}
	if got := string(buf[:n]); got != "ping "+dst.String() {
		t.Fatalf("echo = %q", got)
	}
}
