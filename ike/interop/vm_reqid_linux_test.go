package interop

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
)

// TestVMNarrowedChildren: charon initiates two children with different
// /32 selector pairs (kp: 10.10.2.1 <-> 10.10.1.1, kp2: 10.10.2.2 <->
// 10.10.1.2) against keyplane's one child config with /24 selectors, on
// real ESP. keyplane narrows both onto its child "net"; each gets its
// own reqid, so the kernel's outbound lookup (template: peer, proto,
// mode, reqid; tunnel-mode SAs carry no selector) finds each tunnel's
// own SA and a ping from keyplane's side through each tunnel passes.
// With one reqid for both, the first tunnel's packets left on the
// second's SA and charon's kernel dropped them.
func TestVMNarrowedChildren(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(40*time.Second))
	defer cancel()
	s := suites[0]
	p := lab.NewPair(t)
	inK2, inS2 := netip.MustParseAddr("10.10.1.2"), netip.MustParseAddr("10.10.2.2")
	for _, a := range []netip.Addr{innerK, inK2} {
		p.A.Exec(t, "ip", "addr", "add", a.String()+"/32", "dev", "lo")
	}
	for _, a := range []netip.Addr{innerS, inS2} {
		p.B.Exec(t, "ip", "addr", "add", a.String()+"/32", "dev", "lo")
	}
	p.A.Exec(t, "ip", "route", "add", "10.10.2.0/24", "via", p.B4.String())
	cc := charonConn(p, s)
	cc.Extra = map[string]string{
		"children.kp2.local_ts":      inS2.String() + "/32",
		"children.kp2.remote_ts":     inK2.String() + "/32",
		"children.kp2.esp_proposals": s.esp,
	}
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{cc}})
	cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
	ch := cfg.Connections[0].Children[0]
	ch.LocalTS = []config.TS{{Prefix: netip.MustParsePrefix("10.10.1.0/24")}}
	ch.RemoteTS = []config.TS{{Prefix: netip.MustParsePrefix("10.10.2.0/24")}}
	k := startXfrmKeyplane(t, cfg)

	for _, child := range []string{"kp", "kp2"} {
		if err := c.Initiate(ctx, child); err != nil {
			diagnose(t, p)
			t.Fatalf("charon initiate %s: %v", child, err)
		}
	}
	var kids []ike.ChildInfo
	waitUntil(t, scale(10*time.Second), "keyplane's two children installed", func() bool {
		kids = kids[:0]
		sas, err := k.e.IKESAs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sa := range sas {
			for _, x := range sa.Children {
				if x.State == "installed" {
					kids = append(kids, x)
				}
			}
		}
		return len(kids) == 2
	})
	byLocal := map[string]ike.ChildInfo{}
	for _, x := range kids {
		if x.Name != "net" {
			t.Errorf("keyplane child %q, want both narrowed onto net", x.Name)
		}
		byLocal[x.LocalTS] = x
	}
	one, two := byLocal[innerK.String()+"/32"], byLocal[inK2.String()+"/32"]
	if one.ReqID == 0 || two.ReqID == 0 || one.ReqID == two.ReqID {
		t.Errorf("reqids %#x and %#x: want two distinct ones (children %+v)", one.ReqID, two.ReqID, kids)
	}
	states := p.A.Exec(t, "ip", "xfrm", "state")
	for _, x := range []ike.ChildInfo{one, two} {
		if n := strings.Count(states, "reqid "+strconv.FormatUint(uint64(x.ReqID), 10)); n != 2 {
			t.Errorf("ip xfrm state shows reqid %d on %d SAs, want 2 (child %s <-> %s):\n%s", x.ReqID, n, x.LocalTS, x.RemoteTS, states)
		}
	}

	before := xfrmBytes(t, p.A)
	ping(t, p.A, innerK.String(), innerS.String(), 2)
	ping(t, p.A, inK2.String(), inS2.String(), 2)
	after := xfrmBytes(t, p.A)
	packetsGrew(t, before, after, one, 2, "through the first tunnel")
	packetsGrew(t, before, after, two, 2, "through the second tunnel")
	terminate(t, ctx, c, k, true)
	waitKernelsEmpty(t, p)
}
