package nokernel_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
)

func describeNetEvent(ev kernelops.Event) string {
	switch e := ev.(type) {
	case *kernelops.LinkEvent:
		return fmt.Sprintf("link %s up=%v deleted=%v", e.IfName, e.Up, e.Deleted)
	case *kernelops.AddrEvent:
		return fmt.Sprintf("addr %s %s added=%v", e.IfName, e.Prefix, e.Added)
	case *kernelops.RouteEvent:
		return fmt.Sprintf("route %s via %s src %s added=%v", e.Dst, e.Gateway, e.Src, e.Added)
	}
	return fmt.Sprintf("%T", ev)
}

func TestNetEventsAndRoutes(t *testing.T) {
	b, _ := model(t, nil)
	ev := subscribe(t, b, kernelops.KindAddr|kernelops.KindLink|kernelops.KindRoute)
	n := b.Net()
	idx, err := n.AddInterface("eth0", netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64"))
	noErr(t, "add eth0", err)
	if idx != 2 {
		t.Errorf("eth0 index %d, want 2 (lo is 1)", idx)
	}
	noErr(t, "default route", n.AddRoute(nokernel.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.254"), IfName: "eth0"}))
	_, err = n.AddInterface("eth0")
	mustErr(t, "add eth0 twice", err, kernelops.ErrExists, 0)

	route := func(dst string) (kernelops.Route, error) { return b.RouteTo(ctx(t), netip.MustParseAddr(dst)) }
	for _, tc := range []struct{ dst, src, ifname, gw string }{
		{"192.0.2.77", "192.0.2.1", "eth0", "invalid IP"},
		{"8.8.8.8", "192.0.2.1", "eth0", "192.0.2.254"},
		{"192.0.2.1", "192.0.2.1", "lo", "invalid IP"},
		{"127.0.0.9", "127.0.0.1", "lo", "invalid IP"},
		{"::1", "::1", "lo", "invalid IP"},
		{"2001:db8::9", "2001:db8::1", "eth0", "invalid IP"},
	} {
		r, err := route(tc.dst)
		noErr(t, "route to "+tc.dst, err)
		if r.Src.String() != tc.src || r.IfName != tc.ifname || r.Gateway.String() != tc.gw {
			t.Errorf("route to %s: %+v, want src %s dev %s via %s", tc.dst, r, tc.src, tc.ifname, tc.gw)
		}
	}
	_, err = route("2001:db9::1")
	mustErr(t, "route with no v6 default", err, kernelops.ErrNotFound, 0)

	// A down link is not used; addresses stay.
	noErr(t, "link down", n.SetLinkUp("eth0", false))
	_, err = route("8.8.8.8")
	mustErr(t, "route over a down link", err, kernelops.ErrNotFound, 0)
	noErr(t, "link up", n.SetLinkUp("eth0", true))
	if _, err := route("8.8.8.8"); err != nil {
		t.Fatalf("route after link up: %v", err)
	}
	noErr(t, "delete eth0", n.DeleteInterface("eth0"))
	ifs, _ := b.Interfaces(ctx(t))
	if len(ifs) != 1 || ifs[0].Name != "lo" || !ifs[0].Up || len(ifs[0].Addrs) != 2 {
		t.Fatalf("interfaces after delete: %+v", ifs)
	}

	var got []string
	for _, e := range ev.take() {
		got = append(got, describeNetEvent(e))
	}
	want := []string{
		"link eth0 up=true deleted=false",
		"addr eth0 192.0.2.1/24 added=true",
		"route 192.0.2.0/24 via invalid IP src 192.0.2.1 added=true",
		"addr eth0 2001:db8::1/64 added=true",
		"route 2001:db8::/64 via invalid IP src 2001:db8::1 added=true",
		"route 0.0.0.0/0 via 192.0.2.254 src invalid IP added=true",
		"link eth0 up=false deleted=false",
		"link eth0 up=true deleted=false",
		"addr eth0 2001:db8::1/64 added=false",
		"route 2001:db8::/64 via invalid IP src 2001:db8::1 added=false",
		"addr eth0 192.0.2.1/24 added=false",
		"route 192.0.2.0/24 via invalid IP src 192.0.2.1 added=false",
		"route 0.0.0.0/0 via 192.0.2.254 src invalid IP added=false",
		"link eth0 up=false deleted=true",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n%q\nwant:\n%q", got, want)
	}
	_, err = b.RouteTo(ctx(t), netip.Addr{})
	mustErr(t, "route to nothing", err, kernelops.ErrInvalid, 0)
}

// TestAddressRefcounts: an address that was configured before keyplane's
// first add is never removed by keyplane; keyplane's own goes at the last
// remove.
func TestAddressRefcounts(t *testing.T) {
	b, _ := model(t, map[string]string{"interfaces": "eth0=192.0.2.1/24"})
	has := func(a string) bool {
		ok, err := b.Net().HasAddress("eth0", netip.MustParseAddr(a))
		noErr(t, "has", err)
		return ok
	}
	pre := netip.MustParsePrefix("192.0.2.1/32")
	noErr(t, "add pre-existing", b.AddAddress(ctx(t), "eth0", pre))
	noErr(t, "remove pre-existing", b.RemoveAddress(ctx(t), "eth0", pre))
	if !has("192.0.2.1") {
		t.Fatal("keyplane removed an address it found configured")
	}
	vip := netip.MustParsePrefix("192.0.2.50/32")
	noErr(t, "add", b.AddAddress(ctx(t), "eth0", vip))
	noErr(t, "add again", b.AddAddress(ctx(t), "eth0", vip))
	noErr(t, "remove", b.RemoveAddress(ctx(t), "eth0", vip))
	if !has("192.0.2.50") {
		t.Fatal("removed with a reference left")
	}
	noErr(t, "remove last", b.RemoveAddress(ctx(t), "eth0", vip))
	if has("192.0.2.50") {
		t.Fatal("still there after the last reference")
	}
	mustErr(t, "remove unreferenced", b.RemoveAddress(ctx(t), "eth0", vip), kernelops.ErrNotFound, 0)
	mustErr(t, "add on a missing interface", b.AddAddress(ctx(t), "eth9", vip), kernelops.ErrNotFound, 0)
}

func TestXfrmInterfaces(t *testing.T) {
	b, _ := model(t, map[string]string{"interfaces": "eth0=192.0.2.1/24"})
	x := kernelops.XfrmInterface{Name: "ipsec0", IfID: 7, Underlay: "eth0"}
	noErr(t, "add", b.AddXfrmInterface(ctx(t), x))
	mustErr(t, "same if_id", b.AddXfrmInterface(ctx(t), kernelops.XfrmInterface{Name: "ipsec1", IfID: 7}), kernelops.ErrExists, 0)
	mustErr(t, "missing underlay", b.AddXfrmInterface(ctx(t), kernelops.XfrmInterface{Name: "ipsec2", IfID: 8, Underlay: "eth9"}), kernelops.ErrNotFound, 0)
	err := b.AddXfrmInterface(ctx(t), kernelops.XfrmInterface{Name: "ipsec3"})
	var ke *kernelops.Error
	if !errors.As(err, &ke) || ke.Field != "IfID" {
		t.Fatalf("if_id 0: %v", err)
	}
	mustErr(t, "delete a plain interface", b.DeleteXfrmInterface(ctx(t), "eth0"), kernelops.ErrNotFound, 0)

	// Policies and SAs with the if_id carry traffic sent through it.
	p := tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 1)
	p.IfID = 7
	noErr(t, "policy", b.AddPolicy(ctx(t), p))
	sa := gcmSA(local, remote, 1)
	sa.IfID = 7
	noErr(t, "sa", b.AddSA(ctx(t), sa))
	if r := out(b, t, 1, 1); r.Verdict != nokernel.Passed {
		t.Fatalf("traffic not routed via the xfrm interface matched its policy: %+v", r)
	}
	r, err := b.Inject(ctx(t), nokernel.Packet{Src: inner1, Dst: inner2, Proto: 17, Len: 1, IfID: 7})
	noErr(t, "inject", err)
	if r.Verdict != nokernel.Protected {
		t.Fatalf("via ipsec0: %+v", r)
	}
	noErr(t, "delete", b.DeleteXfrmInterface(ctx(t), "ipsec0"))
}

func TestParams(t *testing.T) {
	b, clk := model(t, map[string]string{
		"interfaces":      "eth0=192.0.2.1/24+2001:db8::1/64; eth1=198.51.100.7/24",
		"routes":          "0.0.0.0/0 via 198.51.100.1 dev eth1; ::/0 dev eth0 src 2001:db8::1",
		"offload":         "eth1=packet",
		"acquire-expires": "5s",
	})
	r, err := b.RouteTo(ctx(t), netip.MustParseAddr("9.9.9.9"))
	noErr(t, "route", err)
	if r.IfName != "eth1" || r.Src.String() != "198.51.100.7" {
		t.Errorf("default route %+v", r)
	}
	if s, _ := b.OffloadSupport(ctx(t), "eth1"); !s.Packet || s.Crypto {
		t.Errorf("eth1 offload %+v", s)
	}
	noErr(t, "trap", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionTrap, 1)))
	out(b, t, 1, 1)
	clk.Advance(5 * 1e9)
	if b.PendingAcquires() != 0 {
		t.Error("acquire-expires=5s not applied")
	}
	for k, v := range map[string]string{
		"interfaces":      "eth0=192.0.2.1",
		"routes":          "0.0.0.0/0 dev",
		"offload":         "lo=warp",
		"acquire-expires": "soon",
	} {
		_, err := nokernel.Open(ctx(t), kernelops.Options{Params: map[string]string{k: v}})
		var ke *kernelops.Error
		if !errors.As(err, &ke) || ke.Field != "Params."+k {
			t.Errorf("%s=%q: %v, want ErrInvalid naming Params.%s", k, v, err, k)
		}
	}
}
