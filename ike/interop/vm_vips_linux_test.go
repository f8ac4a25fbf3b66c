package interop

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
)

// vipPoolK is the pool keyplane leases from in TestVMVirtualIPServer,
// vipPoolS charon's in TestVMVirtualIPClient.
const (
	vipPoolK = "10.10.3.0/28"
	vipPoolS = "10.10.4.0/28"
)

// hasAddr tells whether ns has a on an interface.
func hasAddr(t *testing.T, ns *lab.NS, a string) bool {
	t.Helper()
	return strings.Contains(ns.Exec(t, "ip", "-o", "addr", "show"), " "+a+"/32 ")
}

// TestVMVirtualIPClient: charon serves a pool (vici load-pool), keyplane
// on the XFRM backend asks for vips = 0.0.0.0: it gets charon's first
// address, adds it to the interface towards charon, its child's local
// selector is that address, ping from it passes the tunnel with the SA
// counters moving; the address leaves the interface when the IKE SA is
// deleted, and at daemon stop.
func TestVMVirtualIPClient(t *testing.T) {
	lab.RequireVM(t, "kernel ESP and addresses for keyplane's XFRM backend")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(60*time.Second))
	defer cancel()
	s := suites[0]
	p := lab.NewPair(t)
	p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
	p.A.Exec(t, "ip", "route", "add", innerS.String()+"/32", "via", p.B4.String())
	p.B.Exec(t, "ip", "route", "add", vipPoolS, "via", p.A4.String())
	cc := charonConn(p, s)
	cc.RemoteTS = nil // dynamic: the lease
	cc.Extra = map[string]string{"pools": "kpvips"}
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink})
	if err := c.LoadPool(ctx, "kpvips", vipPoolS, "10.10.4.53"); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadConn(ctx, cc); err != nil {
		t.Fatal(err)
	}
	cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
	cfg.Connections[0].VIPs = []netip.Addr{netip.IPv4Unspecified()}
	cfg.Connections[0].Children[0].LocalTS = []config.TS{{Dynamic: true}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k := startXfrmKeyplane(t, cfg)
	const vip = "10.10.4.1" // charon's first lease of 10.10.4.0/28
	if hasAddr(t, p.A, vip) {
		t.Fatalf("%s on A before the IKE SA", vip)
	}
	t0 := time.Now()
	if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
		t.Fatalf("initiate: %v\ncharon:\n%s", err, tailLines(c.Log(), 40))
	}
	_, kch := k.waitChild(t, ctx)
	t.Logf("established with a virtual IP in %v", time.Since(t0).Round(time.Millisecond))
	if _, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	if kch.LocalTS != vip+"/32" || kch.RemoteTS != innerS.String()+"/32" {
		t.Errorf("keyplane's child selectors %s === %s, want %s/32 === %s/32", kch.LocalTS, kch.RemoteTS, vip, innerS)
	}
	if !hasAddr(t, p.A, vip) {
		t.Fatalf("%s not on A:\n%s", vip, p.A.Exec(t, "ip", "addr"))
	}
	if !strings.Contains(k.log.String(), "dns=[10.10.4.53]") {
		t.Errorf("keyplane did not log the DNS server charon's pool sent")
	}
	before := xfrmBytes(t, p.A)
	ping(t, p.A, vip, innerS.String(), 3)
	after := xfrmBytes(t, p.A)
	for _, spi := range []string{kch.SPIIn, kch.SPIOut} {
		if b, a := before[spiKey(spi)], after[spiKey(spi)]; a[1] < b[1]+3 {
			t.Errorf("SA %s: packets %d -> %d, want 3 more from the virtual IP", spi, b[1], a[1])
		}
	}
	terminate(t, ctx, c, k, false)
	waitKernelsEmpty(t, p)
	if hasAddr(t, p.A, vip) {
		t.Errorf("%s still on A after the IKE SA was deleted", vip)
	}

	// Again (the same identity gets the same address from charon), then
	// the daemon stops: the address goes with it.
	if err := k.e.Initiate(ctx, "net"); err != nil {
		t.Fatalf("initiate again: %v", err)
	}
	if _, kch = k.waitChild(t, ctx); kch.LocalTS != vip+"/32" {
		t.Errorf("second IKE SA: local selector %s, want %s/32", kch.LocalTS, vip)
	}
	if err := k.e.Close(); err != nil {
		t.Fatal(err)
	}
	if hasAddr(t, p.A, vip) {
		t.Errorf("%s still on A after the daemon stopped", vip)
	}
}

// TestVMVirtualIPServer: keyplane on the XFRM backend serves a pool,
// charon asks for vips = 0.0.0.0 (and installs what it gets): charon
// gets keyplane's first address, ping from it to keyplane's inner
// address passes the tunnel, keyplane's pool lists the lease online with
// charon's identity; after the delete the lease is offline, and the
// reconnect gets the same address.
func TestVMVirtualIPServer(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(60*time.Second))
	defer cancel()
	s := suites[0]
	p := lab.NewPair(t)
	p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
	p.A.Exec(t, "ip", "route", "add", vipPoolK, "via", p.B4.String())
	cc := charonConn(p, s)
	cc.LocalTS = nil // dynamic: the virtual IP
	cc.Extra = map[string]string{"vips": "0.0.0.0"}
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{cc},
		Settings: map[string]string{"install_virtual_ip": "yes"}})
	cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
	cfg.Connections[0].Pools = []string{"kp"}
	cfg.Connections[0].Children[0].RemoteTS = []config.TS{{Dynamic: true}}
	pools, err := config.Parse("pools.conf", []byte(fmt.Sprintf("pools {\n\tkp {\n\t\taddrs = %s\n\t\tdns = 10.10.3.53\n\t}\n}\n", vipPoolK)), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Pools = pools.Pools
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k := startXfrmKeyplane(t, cfg)
	const vip = "10.10.3.1"
	for round := range 2 {
		if err := c.Initiate(ctx, "kp"); err != nil {
			diagnose(t, p)
			t.Fatalf("charon initiate (round %d): %v\n%s", round, err, tailLines(c.Log(), 40))
		}
		_, kch := k.waitChild(t, ctx)
		if _, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
			t.Fatal(err)
		}
		if kch.RemoteTS != vip+"/32" {
			t.Errorf("round %d: keyplane's child remote selector %s, want %s/32", round, kch.RemoteTS, vip)
		}
		if !strings.Contains(c.Log(), "installing new virtual IP "+vip) {
			t.Errorf("round %d: charon's log does not show it installing %s", round, vip)
		}
		ps, err := k.e.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 1 || ps[0].Online != 1 || len(ps[0].Leases) != 1 || ps[0].Leases[0].Addr.String() != vip ||
			ps[0].Leases[0].Identity != "b.keyplane.test" || !ps[0].Leases[0].Online {
			t.Errorf("round %d: keyplane's pools: %+v", round, ps)
		}
		before := xfrmBytes(t, p.A)
		ping(t, p.B, vip, innerK.String(), 3)
		after := xfrmBytes(t, p.A)
		for _, spi := range []string{kch.SPIIn, kch.SPIOut} {
			if b, a := before[spiKey(spi)], after[spiKey(spi)]; a[1] < b[1]+3 {
				t.Errorf("round %d: SA %s: packets %d -> %d, want 3 more from charon's virtual IP", round, spi, b[1], a[1])
			}
		}
		terminate(t, ctx, c, k, true)
		waitKernelsEmpty(t, p)
		ps, err = k.e.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 1 || ps[0].Online != 0 || ps[0].Offline != 1 {
			t.Errorf("round %d: after the delete, keyplane's pools: %+v", round, ps)
		}
	}
}
