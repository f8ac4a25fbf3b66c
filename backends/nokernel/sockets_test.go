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

// TestSocketsEncap: the model has no ESP, so its NAT-T socket itself
// consumes ESP and keepalives (kernelops/ikesock tests the framing in
// full); only IKE, without its marker, reaches the engine.
func TestSocketsEncap(t *testing.T) {
	b, _ := model(t, nil)
	nat, err := b.ListenIKE(ctx(t), kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Encap: true})
	noErr(t, "listen", err)
	peer, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(nat.LocalAddr()))
	noErr(t, "peer", err)
	defer peer.Close()
	ch := readOne(nat)
	for _, d := range []string{"\xff", "\x00\x00\x10\x00\x00\x00\x00\x01esp", "\x00\x00\x00\x00ike"} {
		_, err := peer.Write([]byte(d))
		noErr(t, "write", err)
	}
	if got := wait(t, ch); got.err != nil || got.data != "ike" {
		t.Fatalf("read %+v, want only the IKE datagram, without its marker", got)
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
