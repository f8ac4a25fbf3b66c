package interop

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
	"github.com/keyplane/keyplane/kernelops"
)

// requireSwan: as root (make test) strongSwan must be there; otherwise
// the test skips with the reason.
func requireSwan(t testing.TB) {
	t.Helper()
	err := swan.Available()
	switch {
	case err == nil:
	case os.Geteuid() == 0:
		t.Fatalf("interop needs strongSwan when running as root: %v (make deps installs it)", err)
	default:
		t.Skipf("interop: %v", err)
	}
	lab.RequireRoot(t)
}

// hostRig sets up the host rig for suite s: charon with kernel-libipsec
// in namespace B (charon's inner address on its loopback), and keyplane on
// the nokernel model with its IKE sockets in A. edit, if not nil, adjusts
// keyplane's configuration before it starts.
func hostRig(t *testing.T, s suite, edit func(*config.Config), childExtra ...string) (*lab.Pair, *swan.Charon, *nokernel.Backend, *keyplane) {
	t.Helper()
	p := lab.NewPair(t)
	p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.LibIPsec, Conns: []swan.Conn{charonConn(p, s)}})
	nk, err := nokernel.Open(t.Context(), kernelops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nk.Close() })
	cfg := keyplaneConfig(t, p, s, "nokernel", "", childExtra...)
	if edit != nil {
		edit(cfg)
	}
	return p, c, nk, startKeyplane(t, cfg, &inNS{Backend: nk, ns: p.A})
}

// TestHostLibIPsec: keyplane on the nokernel dataplane against charon
// with kernel-libipsec. The host kernel has no ESP, so no packet goes
// through; what is tested is the IKE side: IKE and CHILD SA establishment
// in both roles with both suites, the NAT-T float (libipsec always
// encapsulates ESP, so charon fakes a NAT), and deletion from either side.
func TestHostLibIPsec(t *testing.T) {
	requireSwan(t)
	for _, s := range suites {
		for _, role := range []string{"keyplane-initiates", "charon-initiates"} {
			t.Run(s.String()+"/"+role, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), scale(30*time.Second))
				defer cancel()
				_, c, _, k := hostRig(t, s, nil)
				t0 := time.Now()
				if role == "keyplane-initiates" {
					if err := k.e.Initiate(ctx, "net"); err != nil {
						t.Fatalf("keyplane initiate: %v", err)
					}
				} else if err := c.Initiate(ctx, "kp"); err != nil {
					t.Fatalf("charon initiate: %v", err)
				}
				ksa, kch := k.waitChild(t, ctx)
				csa, err := c.WaitIKE(ctx, "kp", "ESTABLISHED")
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("established in %v: keyplane %s %s<->%s, charon %v", time.Since(t0).Round(time.Millisecond), ksa.Role, ksa.Local, ksa.Remote, csa)
				if hs, _ := k.e.Handshakes(ctx); len(hs) > 0 {
					t.Logf("keyplane handshake (IKE_SA_INIT sent -> child installed): %v", hs[0])
				}
				checkCrosswise(t, ksa, kch, csa, s)
				// libipsec encapsulates: charon fakes a NAT, keyplane floats to 4500.
				if !kch.Encap || !ksa.NATRemote || csa.RemotePort != 4500 {
					t.Errorf("no NAT-T: keyplane encap %v nat-remote %v; charon sees port %d", kch.Encap, ksa.NATRemote, csa.RemotePort)
				}
				if n, m := k.dataplaneCounts(t); n != 2 || m != 3 {
					t.Errorf("keyplane's dataplane: %d SAs, %d policies; want 2 and 3", n, m)
				}
				// Delete from the side that did not initiate.
				terminate(t, ctx, c, k, role == "keyplane-initiates")
				if n, m := k.dataplaneCounts(t); n != 0 || m != 0 {
					t.Errorf("keyplane's dataplane after delete: %d SAs, %d policies", n, m)
				}
			})
		}
	}
}

// TestHostRekey: child rekeying (CREATE_CHILD_SA with REKEY_SA) with
// charon in both directions: keyplane rekeys on its soft lifetime, then
// charon rekeys on command; each time both ends end up with one child on
// new SPIs, agreeing crosswise, the old one deleted.
func TestHostRekey(t *testing.T) {
	requireSwan(t)
	s := suites[0]
	s.esp += "-x25519" // with PFS
	ctx, cancel := context.WithTimeout(t.Context(), scale(60*time.Second))
	defer cancel()
	_, c, nk, k := hostRig(t, s, nil, "rekey_time = 2s", "life_time = 10m")
	if err := k.e.Initiate(ctx, "net"); err != nil {
		t.Fatal(err)
	}
	_, first := k.waitChild(t, ctx)
	sameChild := func(prev string) (string, bool) {
		_, kc, ok := k.child(t)
		if !ok || kc.SPIIn == prev {
			return "", false
		}
		sas, err := c.ListSAs(ctx)
		if err != nil || len(sas) != 1 {
			return "", false
		}
		var installed []string
		for _, ch := range sas[0].Children {
			if ch.State == "INSTALLED" {
				installed = append(installed, ch.SPIOut)
			}
		}
		sad := 0
		for range nk.SAs(ctx) {
			sad++
		}
		return kc.SPIIn, len(installed) == 1 && strings.EqualFold(installed[0], kc.SPIIn) && sad == 2
	}
	var second string
	for deadline := time.Now().Add(scale(20 * time.Second)); ; time.Sleep(50 * time.Millisecond) {
		if spi, ok := sameChild(first.SPIIn); ok {
			second = spi
			break
		}
		if time.Now().After(deadline) {
			sas, _ := c.ListSAs(ctx)
			t.Fatalf("keyplane's rekey did not settle: charon %v", sas)
		}
	}
	t.Logf("keyplane rekeyed: inbound SPI %s -> %s", first.SPIIn, second)
	// Now charon rekeys (before keyplane's next soft expire is due again,
	// the test only needs one more new SPI on both sides).
	if err := c.RekeyChild(ctx, "kp"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(scale(20 * time.Second)); ; time.Sleep(50 * time.Millisecond) {
		if spi, ok := sameChild(second); ok && strings.Contains(k.log.String(), "peer rekeys the child") {
			t.Logf("charon rekeyed: inbound SPI %s -> %s", second, spi)
			break
		}
		if time.Now().After(deadline) {
			sas, _ := c.ListSAs(ctx)
			t.Fatalf("the second rekey did not settle: charon %v", sas)
		}
	}
	if !strings.Contains(k.log.String(), "rekeying child") {
		t.Errorf("keyplane did not log its rekey")
	}
}
