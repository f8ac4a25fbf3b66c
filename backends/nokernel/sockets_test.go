package nokernel_test

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

type readResult struct {
	data          string
	local, remote netip.AddrPort
	err           error
}

func readOne(c kernelops.IKEConn) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 2048)
		n, l, r, err := c.ReadFrom(buf)
		ch <- readResult{string(buf[:n]), l, r, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no datagram within 10s")
	}
	return readResult{}
}

// TestSocketsWildcard: a socket bound to the wildcard address reports the
// local address each datagram came to, and sends from the address given.
func TestSocketsWildcard(t *testing.T) {
	for _, wild := range []string{"0.0.0.0:0", "[::]:0"} {
		t.Run(wild, func(t *testing.T) {
			b, _ := model(t, nil)
			srv, err := b.ListenIKE(ctx(t), kernelops.IKEListen{Addr: netip.MustParseAddrPort(wild)})
			noErr(t, "listen", err)
			defer srv.Close()
			peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			noErr(t, "peer", err)
			defer peer.Close()
			port := srv.LocalAddr().Port()
			// 127.0.0.2 is on lo too: the reply must come from it.
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)
			ch := readOne(srv)
			_, err = peer.WriteToUDPAddrPort([]byte("hello"), to)
			noErr(t, "peer write", err)
			got := wait(t, ch)
			noErr(t, "read", got.err)
			peerAddr := netip.MustParseAddrPort(peer.LocalAddr().String())
			if got.data != "hello" || got.local != to || got.remote != peerAddr {
				t.Fatalf("read %+v, want hello to %s from %s", got, to, peerAddr)
			}
			_, err = srv.WriteTo([]byte("answer"), got.local, got.remote)
			noErr(t, "reply", err)
			buf := make([]byte, 100)
			peer.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, from, err := peer.ReadFromUDPAddrPort(buf)
			noErr(t, "peer read", err)
			if string(buf[:n]) != "answer" || from.Addr().Unmap() != to.Addr() {
				t.Fatalf("reply %q from %s, want from %s", buf[:n], from, to.Addr())
			}
		})
	}
}

// TestSocketsEncap: on the NAT-T socket ESP and keepalives are consumed;
// IKE arrives without its non-ESP marker (the kernelops contract), and
// what the engine writes goes out with it.
func TestSocketsEncap(t *testing.T) {
	b, _ := model(t, nil)
	nat, err := b.ListenIKE(ctx(t), kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Encap: true})
	noErr(t, "listen", err)
	defer nat.Close()
	peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	noErr(t, "peer", err)
	defer peer.Close()
	ch := readOne(nat)
	dst := net.UDPAddrFromAddrPort(nat.LocalAddr())
	for _, d := range [][]byte{{0xff}, {0, 0, 0x10, 0, 0, 0, 0, 1, 'e', 's', 'p'}, {0, 0, 0, 0, 'i', 'k', 'e'}} {
		_, err := peer.WriteToUDP(d, dst)
		noErr(t, "write", err)
	}
	got := wait(t, ch)
	noErr(t, "read", got.err)
	if got.data != "ike" {
		t.Fatalf("read %q, want the IKE datagram without its marker", got.data)
	}
	_, err = nat.WriteTo([]byte("answer"), netip.AddrPort{}, netip.MustParseAddrPort(peer.LocalAddr().String()))
	noErr(t, "write", err)
	buf := make([]byte, 100)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := peer.ReadFromUDPAddrPort(buf)
	noErr(t, "peer read", err)
	if string(buf[:n]) != "\x00\x00\x00\x00answer" {
		t.Fatalf("peer read %q, want the marker then the message", buf[:n])
	}
}

func TestCloseEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	b, clk := model(t, nil)
	sub, err := b.Subscribe(ctx(t), kernelops.SubscribeOptions{})
	noErr(t, "subscribe", err)
	c, err := b.ListenIKE(ctx(t), kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	noErr(t, "listen", err)
	ch := readOne(c)
	sa := gcmSA(local, remote, 1)
	sa.Lifetime.Hard.AddTime = time.Hour
	noErr(t, "add", b.AddSA(ctx(t), sa))
	noErr(t, "watch", b.WatchIdle(ctx(t), sa.ID, time.Minute))
	_, err = b.AllocSPI(ctx(t), kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP})
	noErr(t, "alloc", err)
	noErr(t, "trap", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionTrap, 2)))
	out(b, t, 1, 1)
	if clk.Pending() == 0 {
		t.Fatal("no timers armed: the test proves nothing")
	}

	noErr(t, "close", b.Close())
	noErr(t, "close twice", b.Close())
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers still armed after Close", n)
	}
	if r := wait(t, ch); r.err == nil {
		t.Error("a read on an IKE socket survived Close")
	}
	select {
	case _, ok := <-sub.Events():
		for ok {
			_, ok = <-sub.Events()
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscription open after Close")
	}
	_, err = b.GetSA(ctx(t), sa.ID)
	mustErr(t, "get after close", err, kernelops.ErrClosed, 0)
	mustErr(t, "add after close", b.AddSA(ctx(t), gcmSA(local, remote, 1)), kernelops.ErrClosed, 0)
	for _, err := range b.SAs(ctx(t)) {
		mustErr(t, "dump after close", err, kernelops.ErrClosed, 0)
	}
	_, err = b.Subscribe(ctx(t), kernelops.SubscribeOptions{})
	mustErr(t, "subscribe after close", err, kernelops.ErrClosed, 0)

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before Open:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
