package xfrm

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
)

// readOne reads one datagram from c within d.
func readOne(t *testing.T, c kernelops.IKEConn, d time.Duration) (msg string, local, remote netip.AddrPort, ok bool) {
	t.Helper()
	type res struct {
		n    int
		l, r netip.AddrPort
		err  error
	}
	ch := make(chan res, 1)
	buf := make([]byte, 1500)
	go func() {
		n, l, r, err := c.ReadFrom(buf)
		ch <- res{n, l, r, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read: %v", r.err)
		}
		return string(buf[:r.n]), r.l, r.r, true
	case <-time.After(d):
		// Unblock the reader so the goroutine ends with the test.
		c.Close()
		<-ch
		return "", netip.AddrPort{}, netip.AddrPort{}, false
	}
}

// TestIKESocketBypass: with policies that demand ESP for all traffic
// between the pair and no SA, plain sockets are cut off both ways while
// IKE sockets (per-socket "allow" policies) still talk, v4 and v6. IPv6
// needs the neighbour-discovery holes: without them the peer's neighbour
// advertisement is dropped by the inbound policy.
func TestIKESocketBypass(t *testing.T) {
	p := lab.NewPair(t)
	ba := openIn(t, p.A, kernelops.Options{})
	ctx := context.Background()
	must(t, "ND holes", ba.OpenHoles(ctx, kernelops.HoleSet{IPv6ND: true}))
	for _, fam := range []struct{ a, b netip.Addr }{{p.A4, p.B4}, {p.A6, p.B6}} {
		bits := fam.a.BitLen()
		for _, pol := range []*kernelops.Policy{
			{Selector: kernelops.Selector{Src: netip.PrefixFrom(fam.a, bits), Dst: netip.PrefixFrom(fam.b, bits)}, Dir: kernelops.DirOut,
				Templates: []kernelops.Template{{Src: fam.a, Dst: fam.b, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 9}}},
			{Selector: kernelops.Selector{Src: netip.PrefixFrom(fam.b, bits), Dst: netip.PrefixFrom(fam.a, bits)}, Dir: kernelops.DirIn,
				Templates: []kernelops.Template{{Src: fam.b, Dst: fam.a, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 9}}},
		} {
			pol.Action = kernelops.ActionIPsec
			must(t, "policy", ba.AddPolicy(ctx, pol))
		}
	}
	for _, fam := range []struct{ a, b netip.Addr }{{p.A4, p.B4}, {p.A6, p.B6}} {
		t.Run(fam.a.String(), func(t *testing.T) {
			ike, err := ba.ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(fam.a, 0)})
			must(t, "listen", err)
			defer ike.Close()
			var plainA, plainB *net.UDPConn
			must(t, "plain A", p.A.Do(func() (err error) { plainA, err = listenUDP(netip.AddrPortFrom(fam.a, 0)); return }))
			defer plainA.Close()
			must(t, "plain B", p.B.Do(func() (err error) { plainB, err = listenUDP(netip.AddrPortFrom(fam.b, 0)); return }))
			defer plainB.Close()
			bAddr := plainB.LocalAddr().(*net.UDPAddr).AddrPort()

			// IKE out: passes.
			_, err = ike.WriteTo([]byte("ike out"), netip.AddrPort{}, bAddr)
			must(t, "ike write", err)
			// Generous: a fresh IPv6 neighbour takes a second or two to resolve.
			if got := recvPlain(t, plainB, 5*time.Second); got != "ike out" {
				t.Errorf("IKE datagram not received by the peer: %q", got)
			}
			// IKE in: passes, and the local address is reported.
			_, err = plainB.WriteToUDPAddrPort([]byte("ike in"), ike.LocalAddr())
			must(t, "plain write", err)
			msg, local, remote, ok := readOne(t, ike, 2*time.Second)
			if !ok || msg != "ike in" || local.Addr() != fam.a || remote != bAddr {
				t.Errorf("IKE read %q local %v remote %v (ok %v)", msg, local, remote, ok)
			}
			// Plain traffic, the control: cut off both ways.
			_, _ = plainA.WriteToUDPAddrPort([]byte("plain out"), bAddr)
			if got := recvPlain(t, plainB, 300*time.Millisecond); got != "" {
				t.Errorf("plain datagram passed the ipsec policy: %q", got)
			}
			_, _ = plainB.WriteToUDPAddrPort([]byte("plain in"), plainA.LocalAddr().(*net.UDPAddr).AddrPort())
			if got := recvPlain(t, plainA, 300*time.Millisecond); got != "" {
				t.Errorf("plain datagram passed the inbound policy: %q", got)
			}
		})
	}
}

func recvPlain(t *testing.T, c *net.UDPConn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// TestIKESocketNATT: the NAT-T socket, wildcard-bound in the backend's
// namespace, keeps what is not IKE (no marker: the kernel takes it as
// ESP) from the reader, delivers IKE without its marker and the address
// it came to, and adds the marker on write. The IPv6 wildcard socket
// with its own bypass policies opens beside it on the same port, as the
// engine opens them for IPv4 and IPv6 peers.
func TestIKESocketNATT(t *testing.T) {
	b, ns := fresh(t, kernelops.Options{})
	ctx := context.Background()
	lo4 := ma("127.0.0.1")

	nat, err := b.ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), Encap: true})
	must(t, "listen NAT-T", err)
	defer nat.Close()
	nat6, err := b.ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(netip.IPv6Unspecified(), nat.LocalAddr().Port()), Encap: true})
	must(t, "listen NAT-T [::] on the same port", err)
	defer nat6.Close()
	var plain *net.UDPConn
	must(t, "plain", ns.Do(func() (err error) { plain, err = listenUDP(netip.AddrPortFrom(lo4, 0)); return }))
	defer plain.Close()
	to := netip.AddrPortFrom(lo4, nat.LocalAddr().Port())
	_, _ = plain.WriteToUDPAddrPort([]byte("\x01\x02\x03\x04 esp-ish"), to)
	_, err = plain.WriteToUDPAddrPort(append([]byte{0, 0, 0, 0}, "IKE_AUTH"...), to)
	must(t, "write", err)
	msg, local, remote, ok := readOne(t, nat, 2*time.Second)
	if !ok || msg != "IKE_AUTH" || local != to || remote != plain.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("NAT-T read %q local %v remote %v (ok %v), want the marked message without its marker", msg, local, remote, ok)
	}
	n, err := nat.WriteTo([]byte("IKE reply"), local, remote)
	must(t, "NAT-T write", err)
	if n != len("IKE reply") {
		t.Errorf("NAT-T write reports %d bytes", n)
	}
	if got := recvPlain(t, plain, 2*time.Second); got != "\x00\x00\x00\x00IKE reply" {
		t.Errorf("NAT-T wrote %q, want the non-ESP marker first", got)
	}
}

// TestNDHoles: under an ipsec policy for all traffic between two IPv6
// hosts (and no SA), neighbour discovery works only through the holes:
// the peer's advertisement is otherwise dropped by the inbound policy.
func TestNDHoles(t *testing.T) {
	p := lab.NewPair(t)
	ba := openIn(t, p.A, kernelops.Options{})
	ctx := context.Background()
	for _, pol := range []*kernelops.Policy{
		{Selector: kernelops.Selector{Src: netip.PrefixFrom(p.B6, 128), Dst: netip.PrefixFrom(p.A6, 128)}, Dir: kernelops.DirIn,
			Templates: []kernelops.Template{{Src: p.B6, Dst: p.A6, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 9}}},
	} {
		pol.Action = kernelops.ActionIPsec
		must(t, "policy", ba.AddPolicy(ctx, pol))
	}
	ike, err := ba.ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(p.A6, 0)})
	must(t, "listen", err)
	defer ike.Close()
	var plainB *net.UDPConn
	must(t, "plain B", p.B.Do(func() (err error) { plainB, err = listenUDP(netip.AddrPortFrom(p.B6, 0)); return }))
	defer plainB.Close()
	to := plainB.LocalAddr().(*net.UDPAddr).AddrPort()
	try := func() bool {
		p.A.Exec(t, "ip", "-6", "neigh", "flush", "dev", p.IfA)
		_, err := ike.WriteTo([]byte("hello"), netip.AddrPort{}, to)
		must(t, "write", err)
		return recvPlain(t, plainB, 4*time.Second) == "hello"
	}
	if try() {
		t.Fatalf("reached the peer without ND holes: the inbound policy does not catch ND, the test proves nothing")
	}
	must(t, "open ND holes", ba.OpenHoles(ctx, kernelops.HoleSet{IPv6ND: true}))
	if !try() {
		t.Errorf("neighbour discovery fails with the ND holes open")
	}
}
