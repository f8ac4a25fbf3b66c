package xfrm

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/internal/kerneltest"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestLinkAddrRouteEvents(t *testing.T) {
	b, ns := fresh(t, kernelops.Options{})
	sub := subscribeAll(t, b, kernelops.KindLink|kernelops.KindAddr|kernelops.KindRoute)
	h, err := netlink.NewHandleAt(ns.Handle, unix.NETLINK_ROUTE)
	must(t, "handle", err)
	defer h.Close()
	const d = 10 * time.Second

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "kpe0"}, PeerName: "kpe1"}
	must(t, "add veth", h.LinkAdd(veth))
	l0 := waitEvent(t, sub, d, func(e *kernelops.LinkEvent) bool { return e.IfName == "kpe0" })
	if l0.Up || l0.Deleted || l0.IfIndex == 0 {
		t.Errorf("new link event %+v", l0)
	}
	for _, n := range []string{"kpe0", "kpe1"} {
		l, err := h.LinkByName(n)
		must(t, "link", err)
		must(t, "up", h.LinkSetUp(l))
	}
	waitEvent(t, sub, d, func(e *kernelops.LinkEvent) bool { return e.IfName == "kpe0" && e.Up && e.IfIndex == l0.IfIndex })

	link, err := h.LinkByName("kpe0")
	must(t, "link", err)
	for _, p := range []netip.Prefix{mp("192.0.2.5/24"), mp("2001:db8:5::5/64")} {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
		must(t, "add address", h.AddrAdd(link, a))
		ae := waitEvent(t, sub, d, func(e *kernelops.AddrEvent) bool { return e.Prefix == p })
		if !ae.Added || ae.IfName != "kpe0" || ae.IfIndex != l0.IfIndex {
			t.Errorf("address event %+v", ae)
		}
	}

	gw := net.ParseIP("192.0.2.1")
	r := &netlink.Route{LinkIndex: l0.IfIndex, Dst: &net.IPNet{IP: net.ParseIP("198.51.100.0"), Mask: net.CIDRMask(24, 32)}, Gw: gw}
	must(t, "add route", h.RouteAdd(r))
	re := waitEvent(t, sub, d, func(e *kernelops.RouteEvent) bool { return e.Dst == mp("198.51.100.0/24") })
	if !re.Added || re.Gateway != ma("192.0.2.1") || re.IfIndex != l0.IfIndex || re.Table != unix.RT_TABLE_MAIN {
		t.Errorf("route event %+v", re)
	}
	must(t, "delete route", h.RouteDel(r))
	waitEvent(t, sub, d, func(e *kernelops.RouteEvent) bool { return e.Dst == mp("198.51.100.0/24") && !e.Added })

	must(t, "delete address", h.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("192.0.2.5"), Mask: net.CIDRMask(24, 32)}}))
	waitEvent(t, sub, d, func(e *kernelops.AddrEvent) bool { return e.Prefix == mp("192.0.2.5/24") && !e.Added })

	must(t, "delete link", h.LinkDel(link))
	del := waitEvent(t, sub, d, func(e *kernelops.LinkEvent) bool { return e.IfIndex == l0.IfIndex && e.Deleted })
	if del.IfName != "kpe0" {
		t.Errorf("deleted link named %q", del.IfName)
	}
}

func TestAddressRefcountsKeepForeign(t *testing.T) {
	b, ns := fresh(t, kernelops.Options{})
	ctx := context.Background()
	ipOut(t, ns, "link", "add", "kpd0", "type", "veth", "peer", "name", "kpd1")
	ipOut(t, ns, "addr", "add", "192.0.2.7/32", "dev", "kpd0") // someone else's
	has := func(p netip.Prefix) bool {
		ifs, err := b.Interfaces(ctx)
		must(t, "interfaces", err)
		for _, i := range ifs {
			if i.Name == "kpd0" {
				return slices.Contains(i.Addrs, p)
			}
		}
		t.Fatalf("kpd0 not listed")
		return false
	}
	foreign, ours := mp("192.0.2.7/32"), mp("2001:db8:7::7/128")
	for range 2 {
		must(t, "add foreign", b.AddAddress(ctx, "kpd0", foreign))
		must(t, "add ours", b.AddAddress(ctx, "kpd0", ours))
	}
	for range 2 {
		must(t, "remove foreign", b.RemoveAddress(ctx, "kpd0", foreign))
		must(t, "remove ours", b.RemoveAddress(ctx, "kpd0", ours))
	}
	if !has(foreign) {
		t.Errorf("keyplane removed an address it found configured")
	}
	if has(ours) {
		t.Errorf("keyplane's own address left after the last reference")
	}
	wantIs(t, "remove unreferenced", b.RemoveAddress(ctx, "kpd0", ours), kernelops.ErrNotFound)
	wantIs(t, "add on a missing interface", b.AddAddress(ctx, "kp-none", ours), kernelops.ErrNotFound)
}

func TestRouteTo(t *testing.T) {
	tp := kerneltest.NewTopology(t)
	b, err := kernelops.Open(context.Background(), Name, kernelops.Options{Params: map[string]string{ParamNetns: tp.A}})
	must(t, "open", err)
	defer b.Close()
	as := b.(kernelops.AddrSelector)
	r, err := as.RouteTo(context.Background(), tp.RemoteInner)
	must(t, "route", err)
	if r.Src != tp.LocalInner || r.Gateway != tp.Remote || r.IfName != tp.IfA {
		t.Errorf("route to %s: %+v", tp.RemoteInner, r)
	}
	r, err = as.RouteTo(context.Background(), tp.Remote)
	must(t, "route", err)
	if r.Src != tp.Local || r.Gateway.IsValid() || r.IfName != tp.IfA {
		t.Errorf("route to %s: %+v", tp.Remote, r)
	}
	_, err = as.RouteTo(context.Background(), ma("203.0.113.9"))
	if err == nil {
		t.Errorf("route to an unroutable address succeeded")
	}
}

func TestAcquireFields(t *testing.T) {
	tp := kerneltest.NewTopology(t)
	bk, err := kernelops.Open(context.Background(), Name, kernelops.Options{Params: map[string]string{ParamNetns: tp.A}})
	must(t, "open", err)
	defer bk.Close()
	b := bk.(*Backend)
	sub := subscribeAll(t, b, kernelops.KindAcquire)
	p := &kernelops.Policy{Selector: kernelops.Selector{Src: netip.PrefixFrom(tp.LocalInner, 32), Dst: mp("10.2.0.0/16"), Proto: 17},
		Dir: kernelops.DirOut, Action: kernelops.ActionTrap, Mark: kernelops.Mark{},
		Templates: []kernelops.Template{{Src: tp.Local, Dst: tp.Remote, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 0x4b500042}}}
	must(t, "trap", b.AddPolicy(context.Background(), p))
	got, err := b.GetPolicy(context.Background(), p.ID())
	must(t, "get", err)
	if got.Action != kernelops.ActionTrap {
		t.Errorf("trap reads back as %v", got.Action)
	}
	tr := &kerneltest.Traffic{NS: tp.A}
	f := conformance.Flow{Src: tp.LocalInner, Dst: tp.RemoteInner, Proto: 17, SrcPort: 41000, DstPort: 53}
	must(t, "send", tr.Send(context.Background(), f, 1, 10))
	a := waitEvent(t, sub, 10*time.Second, func(e *kernelops.AcquireEvent) bool { return true })
	want := kernelops.AcquireEvent{Seq: a.Seq, Src: tp.Local, Dst: tp.Remote, Proto: kernelops.ProtoESP, ReqID: 0x4b500042,
		Policy: p.ID(), Packet: kernelops.Selector{Src: netip.PrefixFrom(tp.LocalInner, 32), Dst: netip.PrefixFrom(tp.RemoteInner, 32),
			Proto: 17, SrcPort: 41000, DstPort: 53}}
	if *a != want || a.Seq == 0 {
		t.Errorf("acquire\n got %+v\nwant %+v", *a, want)
	}
}
