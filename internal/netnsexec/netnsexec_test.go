//go:build linux

package netnsexec_test

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/netnsexec"
	"golang.org/x/sys/unix"
)

// threadNS is the inode of the calling thread's network namespace.
func threadNS(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func nsIno(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestDo: fn runs in the namespace — a socket bound there to an address
// only the namespace has stays there — and every thread comes back, also
// with many Do's at once and when fn fails.
func TestDo(t *testing.T) {
	ns := lab.NewNS(t)
	ns.Exec(t, "ip", "addr", "add", "10.99.0.1/32", "dev", "lo")
	n, err := netnsexec.Open("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Initial() {
		t.Fatal("a fresh namespace reports itself initial")
	}
	runtime.LockOSThread()
	home := threadNS(t)
	runtime.UnlockOSThread()
	target := nsIno(t, "/run/netns/"+ns.Name)

	addr := netip.MustParseAddrPort("10.99.0.1:0")
	if c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr)); err == nil {
		c.Close()
		t.Fatal("10.99.0.1 is bindable outside the namespace: the test proves nothing")
	}
	var c *net.UDPConn
	if err := n.Do(func() (err error) {
		if got := threadNS(t); got != target {
			t.Errorf("fn runs in namespace %d, want %d", got, target)
		}
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatalf("bind inside: %v", err)
	}
	c.Close()

	boom := errors.New("boom")
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if err := n.Do(func() error { return boom }); err != boom {
				t.Errorf("Do returned %v, want fn's error", err)
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if got := threadNS(t); got != home {
				t.Errorf("thread left in namespace %d after Do, want %d", got, home)
			}
		})
	}
	wg.Wait()
}

// TestCurrent: "" pins the caller's namespace; Do runs fn without
// switching, so it needs no privilege.
func TestCurrent(t *testing.T) {
	n, err := netnsexec.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	runtime.LockOSThread()
	home := threadNS(t)
	runtime.UnlockOSThread()
	if err := n.Do(func() error {
		if got := threadNS(t); got != home {
			t.Errorf("fn runs in namespace %d, want the caller's %d", got, home)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// PID 1's namespace may be unreadable (another user namespace): then
	// nothing is known to be initial.
	var st unix.Stat_t
	if got, want := n.Initial(), unix.Stat("/proc/1/ns/net", &st) == nil && st.Ino == home; got != want {
		t.Errorf("Initial %v, want %v", got, want)
	}
	if _, err := netnsexec.Open("/nonexistent/ns"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("open of a missing path: %v, want ENOENT", err)
	}
}

func TestPathOf(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"kp1", "/run/netns/kp1"},
		{"/proc/1/ns/net", "/proc/1/ns/net"},
		{"./x", "./x"},
	} {
		if got := netnsexec.PathOf(c.in); got != c.want {
			t.Errorf("PathOf(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
