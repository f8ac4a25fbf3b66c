package interop

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/xfrm"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
	"github.com/keyplane/keyplane/kernelops"
)

// mobikeRig is a vmRig pair joined by a second veth pair on another
// subnet: each side has an address on both links (A4/B4 on the first,
// a2/b2 on the second). The first link's subnet is also routed through
// the second at a higher metric, so that when a side's first address
// goes, the kernel routes the peer's first address from its second one.
type mobikeRig struct {
	p      *lab.Pair
	a2, b2 netip.Addr
}

func newMobikeRig(t *testing.T) *mobikeRig {
	t.Helper()
	p := lab.NewPair(t)
	x := p.A4.As4()[2]
	r := &mobikeRig{p: p, a2: netip.AddrFrom4([4]byte{10, 78, x, 1}), b2: netip.AddrFrom4([4]byte{10, 78, x, 2})}
	if out, err := exec.Command("ip", "link", "add", "veth-a2", "netns", p.A.Name, "type", "veth", "peer", "name", "veth-b2", "netns", p.B.Name).CombinedOutput(); err != nil {
		t.Fatalf("second veth pair: %v: %s", err, out)
	}
	p.A.Exec(t, "ip", "addr", "add", r.a2.String()+"/24", "dev", "veth-a2")
	p.B.Exec(t, "ip", "addr", "add", r.b2.String()+"/24", "dev", "veth-b2")
	p.A.Exec(t, "ip", "link", "set", "veth-a2", "up")
	p.B.Exec(t, "ip", "link", "set", "veth-b2", "up")
	p.A.Exec(t, "ip", "route", "add", p.Prefix4().String(), "via", r.b2.String(), "dev", "veth-a2", "metric", "100")
	p.B.Exec(t, "ip", "route", "add", p.Prefix4().String(), "via", r.a2.String(), "dev", "veth-b2", "metric", "100")
	p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
	p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
	// The inner route survives either first address going (the outer
	// route comes from the SA's addresses).
	p.A.Exec(t, "ip", "route", "add", innerS.String()+"/32", "via", r.b2.String(), "dev", "veth-a2", "src", innerK.String())
	return r
}

// TestVMMobike: MOBIKE (RFC 4555) against charon on kernel ESP, a ping
// running through the tunnel every 100 ms.
//   - keyplane moves: keyplane (local_addrs %any) initiates from its
//     first address; that address is removed; keyplane sends
//     UPDATE_SA_ADDRESSES from its second, charon follows, both kernels'
//     SAs move (same SPIs), the ping goes on; pings lost are logged.
//   - charon moves: charon initiates from its first address, which is
//     removed; charon's UPDATE_SA_ADDRESSES comes from its second and
//     keyplane, the responder, follows.
//   - keyplane moves without Migrate: as the first, with the XFRM
//     backend's CapMigrate hidden (the dataplanes without it, PF_KEY on
//     the BSDs, cannot run here): keyplane rekeys the child after the
//     move, and the new SAs and the policies' templates in its kernel are
//     on the new address.
//
// In every case neither kernel keeps an SA or a policy template on the
// removed address.
func TestVMMobike(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	s := suites[0]
	for _, mover := range []string{"keyplane", "charon", "keyplane-without-migrate"} {
		noMigrate := mover == "keyplane-without-migrate"
		if noMigrate {
			mover = "keyplane"
		}
		name := mover + "-moves"
		if noMigrate {
			name += "-without-migrate"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(2*time.Minute))
			defer cancel()
			r := newMobikeRig(t)
			p := r.p
			conn := charonConn(p, s)
			cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
			c0 := cfg.Connections[0]
			if mover == "keyplane" {
				conn.Remote = "%any"
				c0.LocalAddrs, c0.LocalAddr = nil, netip.Addr{}
			} else {
				conn.Local, conn.StartAction = "%any", "none"
				c0.RemoteAddrs, c0.RemoteAddr = nil, netip.Addr{}
			}
			var k *keyplane
			if noMigrate {
				xb, err := xfrm.Open(t.Context(), kernelops.Options{Params: cfg.Backend.Params})
				lab.Need(t, "XFRM backend in the namespace", err)
				t.Cleanup(func() { xb.Close() })
				k = startKeyplane(t, cfg, withoutMigrate{xb})
			} else {
				k = startXfrmKeyplane(t, cfg)
			}
			c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{conn}})
			if mover == "keyplane" {
				if err := k.e.Initiate(ctx, "net"); err != nil {
					diagnose(t, p)
					t.Fatal(err)
				}
			} else if err := c.Initiate(ctx, "kp"); err != nil {
				t.Fatal(err)
			}
			before, kch := k.waitChild(t, ctx)
			csa, err := c.WaitIKE(ctx, "kp", "ESTABLISHED")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("before: keyplane IKE %s -> %s, child %s/%s; charon %s:%d -> %s:%d", before.Local, before.Remote, kch.SPIIn, kch.SPIOut,
				csa.Local, csa.LocalPort, csa.Remote, csa.RemotePort)
			if !strings.Contains(k.log.String(), "MOBIKE") || !strings.Contains(k.log.String(), "active=true") {
				t.Errorf("keyplane's log does not show MOBIKE negotiated")
			}
			// RFC 4555 §3.2: on port 4500 though there is no NAT.
			if !strings.HasSuffix(before.Local, ":4500") || !strings.HasSuffix(before.Remote, ":4500") || before.NATLocal || before.NATRemote {
				t.Errorf("keyplane's IKE SA %s -> %s (NAT %v/%v), want both on 4500 and no NAT", before.Local, before.Remote, before.NATLocal, before.NATRemote)
			}
			ping(t, p.A, innerK.String(), innerS.String(), 2)

			const every = 100 * time.Millisecond
			pg := startPing(t, p.A, innerK.String(), innerS.String(), every, int(scale(8*time.Second)/every))
			time.Sleep(scale(2 * time.Second))
			moveNS, gone, now := p.A, p.A4, r.a2
			dev := p.IfA
			if mover == "charon" {
				moveNS, gone, now, dev = p.B, p.B4, r.b2, p.IfB
			}
			t0 := time.Now()
			moveNS.Exec(t, "ip", "addr", "del", gone.String()+"/24", "dev", dev)
			var after ike.IKESAInfo
			var ach ike.ChildInfo
			waitUntil(t, scale(30*time.Second), "keyplane's IKE SA and child on the new address", func() bool {
				sa, ch, ok := k.child(t)
				after, ach = sa, ch
				want := ch.Local
				if mover == "charon" {
					want = ch.Remote
				}
				// Without Migrate: the rekeyed child alone.
				return ok && want == now.String() && (!noMigrate || len(sa.Children) == 1 && ch.SPIIn != kch.SPIIn)
			})
			moved := time.Since(t0)
			sent, got := pg.wait(t)
			t.Logf("%s's address %s removed: keyplane's child on %s -> %s %v later; pings every %v: %d sent, %d lost",
				mover, gone, ach.Local, ach.Remote, moved.Round(time.Millisecond), every, sent, sent-got)
			if after.SPIi != before.SPIi || after.SPIr != before.SPIr {
				t.Errorf("IKE SPIs changed: %s/%s -> %s/%s", before.SPIi, before.SPIr, after.SPIi, after.SPIr)
			}
			if !noMigrate && (ach.SPIIn != kch.SPIIn || ach.SPIOut != kch.SPIOut) {
				t.Errorf("child SPIs changed: %s/%s -> %s/%s", kch.SPIIn, kch.SPIOut, ach.SPIIn, ach.SPIOut)
			}
			if noMigrate && !strings.Contains(k.log.String(), "rekeying it so that new SAs take the new addresses") {
				t.Errorf("keyplane's log shows no rekey in place of Migrate")
			}
			csa, err = c.WaitIKE(ctx, "kp", "ESTABLISHED")
			if err != nil {
				t.Fatal(err)
			}
			wantCharon := [2]string{p.B4.String(), now.String()}
			if mover == "charon" {
				wantCharon = [2]string{now.String(), p.A4.String()}
			}
			if got := [2]string{csa.Local, csa.Remote}; got != wantCharon {
				t.Errorf("charon's IKE SA %v, want %v", got, wantCharon)
			}
			// Both kernels: the child's two SAs between the new addresses,
			// the policies' templates there too (the old SAs of a rekey
			// may take a moment to go).
			waitUntil(t, scale(10*time.Second), "two ESP SAs in each kernel", func() bool {
				return strings.Count(p.A.Exec(t, "ip", "xfrm", "state"), "proto esp") == 2 &&
					strings.Count(p.B.Exec(t, "ip", "xfrm", "state"), "proto esp") == 2
			})
			for _, ns := range []*lab.NS{p.A, p.B} {
				if pol := ns.Exec(t, "ip", "xfrm", "policy"); strings.Contains(pol, gone.String()) {
					t.Errorf("%s still has policy templates on the removed address %s:\n%s", ns.Name, gone, pol)
				}
				st := ns.Exec(t, "ip", "xfrm", "state")
				if n := strings.Count(st, "proto esp"); n != 2 {
					t.Errorf("%s holds %d ESP SAs, want 2:\n%s", ns.Name, n, st)
				}
				if strings.Contains(st, gone.String()) {
					t.Errorf("%s still has SAs on the removed address %s:\n%s", ns.Name, gone, st)
				}
			}
			if sent-got > int(scale(3*time.Second)/every) {
				t.Errorf("%d of %d pings lost across the move", sent-got, sent)
			}
			ping(t, p.A, innerK.String(), innerS.String(), 3)
			ping(t, p.B, innerS.String(), innerK.String(), 3)
			if mover == "keyplane" && !strings.Contains(k.log.String(), "MOBIKE: peer follows") {
				t.Errorf("keyplane's log shows no answer to its UPDATE_SA_ADDRESSES")
			}
			if mover == "charon" && !strings.Contains(k.log.String(), "MOBIKE: peer moved") {
				t.Errorf("keyplane's log shows no UPDATE_SA_ADDRESSES from charon")
			}
		})
	}
}

// withoutMigrate is a named test double: the real XFRM backend with
// CapMigrate hidden, as a dataplane without Migrate (PF_KEY on FreeBSD)
// shows it; everything else is the kernel.
type withoutMigrate struct{ *xfrm.Backend }

func (b withoutMigrate) Capabilities() kernelops.Capabilities {
	c := b.Backend.Capabilities()
	c.Caps &^= kernelops.CapMigrate
	c.Notes = map[kernelops.Cap]string{kernelops.CapMigrate: "hidden by the test"}
	return c
}
