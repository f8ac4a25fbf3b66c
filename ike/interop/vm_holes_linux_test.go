package interop

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
)

// TestVMHoles: keyplane and charon with 0.0.0.0/0 selectors at both
// ends, so both kernels hold ipsec policies that catch IKE itself.
// keyplane opens its holes (pass policies for UDP from and to its IKE
// ports) at start, the tunnel comes up and carries ping, IKE keeps
// passing through the 0.0.0.0/0 policies (charon's delete reaches
// keyplane, which answers), and keyplane's end leaves no hole behind.
func TestVMHoles(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(40*time.Second))
	defer cancel()
	s := suites[0]
	p := lab.NewPair(t)
	p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
	p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
	p.A.Exec(t, innerRoute(p)...)
	cc := charonConn(p, s)
	cc.LocalTS, cc.RemoteTS = []string{"0.0.0.0/0"}, []string{"0.0.0.0/0"}
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{cc}})
	cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
	any4 := []config.TS{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}}
	ch := cfg.Connections[0].Children[0]
	ch.LocalTS, ch.RemoteTS = any4, any4
	k := startXfrmKeyplane(t, cfg)

	holes := func() int {
		n := 0
		for _, l := range strings.Split(p.A.Exec(t, "ip", "xfrm", "policy"), "\n") {
			if strings.Contains(l, "proto udp") && (strings.Contains(l, "sport 500") || strings.Contains(l, "dport 500") ||
				strings.Contains(l, "sport 4500") || strings.Contains(l, "dport 4500")) {
				n++
			}
		}
		return n
	}
	// Ports 500 and 4500, in and out, IPv4 and IPv6.
	if n := holes(); n != 8 {
		t.Errorf("%d hole policies for UDP 500/4500 in keyplane's kernel, want 8:\n%s", n, p.A.Exec(t, "ip", "xfrm", "policy"))
	}
	if !strings.Contains(k.log.String(), "holes open") {
		t.Error("keyplane's log does not say the holes are open")
	}
	if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
		t.Fatalf("initiate: %v", err)
	}
	_, kch := k.waitChild(t, ctx)
	if kch.LocalTS != "0.0.0.0/0" || kch.RemoteTS != "0.0.0.0/0" {
		t.Fatalf("child selectors %s <-> %s, want 0.0.0.0/0 both", kch.LocalTS, kch.RemoteTS)
	}
	ping(t, p.A, innerK.String(), innerS.String(), 3)
	// IKE through the 0.0.0.0/0 policies: charon deletes, keyplane hears.
	terminate(t, ctx, c, k, true)
	k.waitNoSAs(t, ctx)
	k.e.Close()
	if n := holes(); n != 0 {
		t.Errorf("%d hole policies left after keyplane stopped", n)
	}
	waitKernelsEmpty(t, p)
}
