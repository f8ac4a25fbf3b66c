//go:build linux

package ikesock_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/ikesock"
)

// These tests are Linux's: they use network namespaces and the whole of
// 127.0.0.0/8 on loopback.

const backend = "test"

func listen(t *testing.T, c ikesock.Config) kernelops.IKEConn {
	t.Helper()
	c.Backend = backend
	k, err := ikesock.Listen(context.Background(), c)
	if err != nil {
		t.Fatalf("listen %s: %v", c.Listen.Addr, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func udp(t *testing.T, do func(func() error) error, a string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	mk := func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(a)))
		return err
	}
	var err error
	if do != nil {
		err = do(mk)
	} else {
		err = mk()
	}
	if err != nil {
		t.Fatalf("peer %s: %v", a, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type result struct {
	msg           string
	local, remote netip.AddrPort
}

// next reads k's next datagram (UDP queues it: write first, then read),
// failing t after 10s.
func next(t *testing.T, k kernelops.IKEConn) result {
	t.Helper()
	var r result
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		n, l, rem, err := k.ReadFrom(buf)
		r = result{string(buf[:n]), l, rem}
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(10 * time.Second):
		k.Close() // ends the read
		<-errc
		t.Fatal("no datagram within 10s")
	}
	return r
}

// blockedRead starts a read that finds nothing and returns its error.
func blockedRead(k kernelops.IKEConn) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := k.ReadFrom(make([]byte, 100))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it block
	return errc
}

func peerRead(t *testing.T, c *net.UDPConn) (string, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return string(buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// TestWildcardLocalAddress: a socket bound to 0.0.0.0 or :: reports the
// address each datagram came to (packet info), and a reply from that
// address leaves from it — not from the address the route would pick.
// Both families run in a namespace of their own whose loopback has a
// second address; the socket is created there through Config.Do.
func TestWildcardLocalAddress(t *testing.T) {
	ns := lab.NewNS(t)
	ns.Exec(t, "ip", "addr", "add", "fd00:77::2/128", "dev", "lo", "nodad")
	for _, tc := range []struct{ wild, peer, second string }{
		{"0.0.0.0:0", "127.0.0.1:0", "127.0.0.2"},
		{"[::]:0", "[::1]:0", "fd00:77::2"},
	} {
		t.Run(tc.wild, func(t *testing.T) {
			srv := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort(tc.wild)}, Do: ns.Do})
			if got := srv.LocalAddr(); !got.Addr().IsUnspecified() || got.Addr().Is6() != (tc.wild[0] == '[') || got.Port() == 0 {
				t.Fatalf("LocalAddr %s for %s", got, tc.wild)
			}
			peer := udp(t, ns.Do, tc.peer)
			to := netip.AddrPortFrom(netip.MustParseAddr(tc.second), srv.LocalAddr().Port())
			if _, err := peer.WriteToUDPAddrPort([]byte("hello"), to); err != nil {
				t.Fatalf("peer write: %v", err)
			}
			got := next(t, srv)
			peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			if got.msg != "hello" || got.local != to || got.remote != peerAddr {
				t.Fatalf("read %+v, want hello to %s from %s", got, to, peerAddr)
			}
			if n, err := srv.WriteTo([]byte("answer"), got.local, got.remote); err != nil || n != len("answer") {
				t.Fatalf("reply: %d, %v", n, err)
			}
			if msg, from := peerRead(t, peer); msg != "answer" || from != to {
				t.Fatalf("reply %q from %s, want from %s", msg, from, to)
			}
			// No local address: the OS picks the source.
			if _, err := srv.WriteTo([]byte("any"), netip.AddrPort{}, got.remote); err != nil {
				t.Fatalf("write without local: %v", err)
			}
			if msg, _ := peerRead(t, peer); msg != "any" {
				t.Fatalf("peer read %q", msg)
			}
		})
	}
}

// TestBoundLocalAddress: a socket bound to one address reports it.
func TestBoundLocalAddress(t *testing.T) {
	srv := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("[::ffff:127.0.0.1]:0")}})
	if a := srv.LocalAddr().Addr(); a != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("LocalAddr %s: want the mapped address unmapped", srv.LocalAddr())
	}
	peer := udp(t, nil, "127.0.0.1:0")
	peer.WriteToUDPAddrPort([]byte("x"), srv.LocalAddr())
	if got := next(t, srv); got.local != srv.LocalAddr() {
		t.Fatalf("read %+v, want local %s", got, srv.LocalAddr())
	}
	// A mapped destination is unmapped for the IPv4 socket.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(peer.LocalAddr().(*net.UDPAddr).AddrPort().Addr().As16()), peer.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	if _, err := srv.WriteTo([]byte("y"), netip.AddrPort{}, mapped); err != nil {
		t.Fatalf("write to %s: %v", mapped, err)
	}
	if msg, _ := peerRead(t, peer); msg != "y" {
		t.Fatalf("peer read %q", msg)
	}
}

// TestBothFamiliesOnOnePort: the engine opens 0.0.0.0:P for IPv4 peers
// and [::]:P for IPv6 ones; with a dual-stack [::] the second bind would
// fail with EADDRINUSE.
func TestBothFamiliesOnOnePort(t *testing.T) {
	v4 := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("0.0.0.0:0")}})
	port := v4.LocalAddr().Port()
	listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.AddrPortFrom(netip.IPv6Unspecified(), port)}})
}

// TestEncap: on the NAT-T socket NAT keepalives and ESP never reach the
// reader, IKE arrives without its non-ESP marker, and what is written
// goes out behind one. A plain socket passes the same bytes untouched.
func TestEncap(t *testing.T) {
	nat := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Encap: true}})
	plain := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")}})
	peer := udp(t, nil, "127.0.0.1:0")
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	keepalive := []byte{0xff}
	esp := []byte{0, 0, 0x10, 0, 0, 0, 0, 1, 'e', 's', 'p'}
	short := []byte{0, 0, 0}
	ike := []byte{0, 0, 0, 0, 'i', 'k', 'e'}

	for _, d := range [][]byte{keepalive, esp, short, ike} {
		if _, err := peer.WriteToUDPAddrPort(d, nat.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if got := next(t, nat); got.msg != "ike" || got.remote != peerAddr {
		t.Fatalf("NAT-T read %+v, want the IKE datagram without its marker", got)
	}
	n, err := nat.WriteTo([]byte("answer"), netip.AddrPort{}, peerAddr)
	if err != nil || n != len("answer") {
		t.Fatalf("NAT-T write: %d, %v", n, err)
	}
	if msg, _ := peerRead(t, peer); msg != "\x00\x00\x00\x00answer" {
		t.Fatalf("peer read %q, want the marker, then the message", msg)
	}
	// A NAT-keepalive goes out as it is: one 0xff octet, no marker.
	if n, err := nat.WriteTo(keepalive, netip.AddrPort{}, peerAddr); err != nil || n != 1 {
		t.Fatalf("NAT-T keepalive write: %d, %v", n, err)
	}
	if msg, _ := peerRead(t, peer); msg != "\xff" {
		t.Fatalf("peer read %q, want the keepalive octet alone", msg)
	}

	peer.WriteToUDPAddrPort(esp, plain.LocalAddr())
	if got := next(t, plain); got.msg != string(esp) {
		t.Fatalf("plain read %q, want %q untouched", got.msg, esp)
	}
	plain.WriteTo([]byte("plain"), netip.AddrPort{}, peerAddr)
	if msg, _ := peerRead(t, peer); msg != "plain" {
		t.Fatalf("peer read %q from the plain socket", msg)
	}
}

func wantErr(t *testing.T, what string, err error, sentinel error, field string) *kernelops.Error {
	t.Helper()
	var ke *kernelops.Error
	if !errors.As(err, &ke) || !errors.Is(err, sentinel) || ke.Field != field || ke.Backend != backend {
		t.Fatalf("%s: got %#v (%v), want a %s *kernelops.Error wrapping %v with field %q", what, err, err, backend, sentinel, field)
	}
	return ke
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	_, err := ikesock.Listen(ctx, ikesock.Config{Backend: backend})
	wantErr(t, "no address", err, kernelops.ErrInvalid, "Addr")

	v4 := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("0.0.0.0:0")}})
	_, err = v4.WriteTo([]byte("x"), netip.AddrPort{}, netip.AddrPort{})
	wantErr(t, "no destination", err, kernelops.ErrInvalid, "remote")
	_, err = v4.WriteTo([]byte("x"), netip.AddrPort{}, netip.MustParseAddrPort("[::1]:500"))
	wantErr(t, "IPv6 destination, IPv4 socket", err, kernelops.ErrInvalid, "remote")
	_, err = v4.WriteTo([]byte("x"), netip.MustParseAddrPort("[::1]:0"), netip.MustParseAddrPort("127.0.0.1:500"))
	wantErr(t, "IPv6 source, IPv4 socket", err, kernelops.ErrInvalid, "local")

	_, err = ikesock.Listen(ctx, ikesock.Config{Backend: backend, Listen: kernelops.IKEListen{Addr: v4.LocalAddr()}})
	if ke := wantErr(t, "port in use", err, syscall.EADDRINUSE, ""); ke.Op != "listen IKE" {
		t.Errorf("op %q", ke.Op)
	}

	// Control's error fails the listen, its errno mapped to a sentinel.
	_, err = ikesock.Listen(ctx, ikesock.Config{Backend: backend, Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")},
		Control: func(uintptr, bool, bool) error { return syscall.EPERM }})
	wantErr(t, "control", err, kernelops.ErrPermission, "")
	// A *kernelops.Error from Control comes back as it is.
	own := kernelops.NotSupported(backend, "bypass", "no IPsec in this kernel")
	_, err = ikesock.Listen(ctx, ikesock.Config{Backend: backend, Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")},
		Control: func(uintptr, bool, bool) error { return own }})
	if err != own {
		t.Errorf("control's *kernelops.Error came back as %#v", err)
	}
	// So does Do's.
	_, err = ikesock.Listen(ctx, ikesock.Config{Backend: backend, Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")},
		Do: func(func() error) error { return syscall.ENOENT }})
	wantErr(t, "do", err, kernelops.ErrNotFound, "")

	// A closed socket: both the kernelops and the net sentinel hold, for
	// a read blocked at Close and for a call after it.
	c := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Encap: true}})
	errc := blockedRead(c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, werr := c.WriteTo([]byte("x"), netip.AddrPort{}, netip.MustParseAddrPort("127.0.0.1:9"))
	for what, err := range map[string]error{"blocked read": <-errc, "write": werr} {
		wantErr(t, what, err, kernelops.ErrClosed, "")
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s: %v is not net.ErrClosed", what, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestControl: Control sees the new socket's fd before bind, with its
// family and role.
func TestControl(t *testing.T) {
	type call struct{ v6, encap bool }
	for _, tc := range []struct {
		addr  string
		encap bool
	}{{"127.0.0.1:0", false}, {"[::1]:0", true}} {
		var got []call
		listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort(tc.addr), Encap: tc.encap},
			Control: func(fd uintptr, v6, encap bool) error {
				got = append(got, call{v6, encap})
				// The fd is the new UDP socket of the address's family.
				typ, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
				if err != nil || typ != syscall.SOCK_DGRAM {
					t.Errorf("socket type %d, %v", typ, err)
				}
				dom, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
				if wantDom := map[bool]int{false: syscall.AF_INET, true: syscall.AF_INET6}[v6]; err != nil || dom != wantDom {
					t.Errorf("socket domain %d, %v; want %d", dom, err, wantDom)
				}
				return nil
			}})
		want := call{netip.MustParseAddrPort(tc.addr).Addr().Is6(), tc.encap}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: Control calls %v, want [%v]", tc.addr, got, want)
		}
	}
}

// TestGroup: closing the group closes its sockets (a blocked read ends)
// and refuses new ones; a socket closed on its own leaves the group.
func TestGroup(t *testing.T) {
	var g ikesock.Group
	a := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")}, Group: &g})
	b := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")}, Group: &g})
	if g.Len() != 2 {
		t.Fatalf("group holds %d sockets, want 2", g.Len())
	}
	b.Close()
	if g.Len() != 1 {
		t.Fatalf("group holds %d sockets after one closed, want 1", g.Len())
	}
	errc := blockedRead(a)
	g.Close()
	wantErr(t, "read after group close", <-errc, kernelops.ErrClosed, "")
	_, err := ikesock.Listen(context.Background(), ikesock.Config{Backend: backend, Group: &g,
		Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")}})
	wantErr(t, "listen after group close", err, kernelops.ErrClosed, "")
	if g.Len() != 0 {
		t.Fatalf("closed group holds %d sockets", g.Len())
	}
}

// TestNoAllocs: reading and writing IKE on a NAT-T socket — the path with
// the marker both ways, and on a wildcard socket with packet info both
// ways — allocates nothing, but for the list of control messages x/net's
// ControlMessage.Parse builds for each read on a wildcard socket. The
// source's control message is built once, not per write.
func TestNoAllocs(t *testing.T) {
	for _, tc := range []struct {
		addr string
		max  float64
	}{{"0.0.0.0:0", 1}, {"127.0.0.1:0", 0}} {
		c := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort(tc.addr), Encap: true}})
		self := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), c.LocalAddr().Port())
		msg := make([]byte, 300)
		buf := make([]byte, 2048)
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := c.WriteTo(msg, self, self); err != nil {
				t.Fatal(err)
			}
			n, local, _, err := c.ReadFrom(buf)
			if err != nil || n != len(msg) || local != self {
				t.Fatalf("read %d bytes to %s: %v", n, local, err)
			}
		})
		if allocs > tc.max {
			t.Errorf("%s: %.1f allocations per write and read, want at most %.0f", tc.addr, allocs, tc.max)
		}
	}
}
