package interop

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/keyplane/keyplane/backends/xfrm"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
	"github.com/keyplane/keyplane/kernelops"
)

// xfrmBytes reads `ip -s xfrm state` in ns: bytes and packets by SPI.
func xfrmBytes(t *testing.T, ns *lab.NS) map[string][2]uint64 {
	t.Helper()
	out := ns.Exec(t, "ip", "-s", "xfrm", "state")
	res := map[string][2]uint64{}
	spiRe := regexp.MustCompile(`proto esp spi 0x([0-9a-f]+)`)
	curRe := regexp.MustCompile(`(?s)lifetime current:\s+(\d+)\(bytes\), (\d+)\(packets\)`)
	for _, block := range strings.Split(out, "\nsrc ") {
		m := spiRe.FindStringSubmatch(block)
		c := curRe.FindStringSubmatch(block)
		if m == nil || c == nil {
			continue
		}
		b, _ := strconv.ParseUint(c[1], 10, 64)
		p, _ := strconv.ParseUint(c[2], 10, 64)
		res[strings.TrimLeft(m[1], "0")] = [2]uint64{b, p}
	}
	return res
}

func spiKey(s string) string { return strings.TrimLeft(strings.ToLower(s), "0") }

// xfrmLeft returns the SAD and SPD of ns; per-socket policies (the IKE
// sockets' bypass, not SPD entries) are left out.
func xfrmLeft(t *testing.T, ns *lab.NS) (states, policies string) {
	var pols []string
	for _, block := range strings.Split(ns.Exec(t, "ip", "xfrm", "policy"), "\nsrc ") {
		if b := strings.TrimSpace(block); b != "" && !strings.Contains(b, "\tsocket ") && !strings.Contains(b, " socket in ") && !strings.Contains(b, " socket out ") {
			pols = append(pols, b)
		}
	}
	return strings.TrimSpace(ns.Exec(t, "ip", "xfrm", "state")), strings.Join(pols, "\n")
}

// diagnose logs what the namespaces look like when IKE does not get through.
func diagnose(t *testing.T, p *lab.Pair) {
	for _, x := range []struct {
		name string
		ns   *lab.NS
	}{{"keyplane", p.A}, {"charon", p.B}} {
		for _, cmd := range [][]string{{"ip", "-s", "link"}, {"ip", "addr"}, {"ip", "neigh"}, {"ip", "route"}, {"ss", "-uanp"}, {"ip", "xfrm", "policy"}} {
			out, err := x.ns.Run(cmd...)
			t.Logf("%s: %s: %v\n%s", x.name, strings.Join(cmd, " "), err, out)
		}
	}
}

func ping(t *testing.T, ns *lab.NS, from, to string, n int) {
	t.Helper()
	if out, err := ns.Run("ping", "-c", strconv.Itoa(n), "-i", "0.2", "-W", "3", "-I", from, to); err != nil {
		t.Fatalf("ping %s -> %s through the tunnel: %v\n%s", from, to, err, out)
	}
}

// TestVMKernel: keyplane on the XFRM backend in namespace A, charon with
// kernel-netlink in B, real ESP: both roles, both suites (and the first
// one with UDP encapsulation forced), ping both ways through the tunnel,
// the kernel's counters moving on both sides, delete from either side
// leaving no state and no policy in either namespace.
func TestVMKernel(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	cases := append([]suite(nil), suites...)
	natt := suites[0]
	natt.encap, natt.name = true, suites[0].ike+"+encap"
	cases = append(cases, natt)
	for _, s := range cases {
		for _, role := range []string{"keyplane-initiates", "charon-initiates"} {
			t.Run(s.String()+"/"+role, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), scale(30*time.Second))
				defer cancel()
				p := lab.NewPair(t)
				p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
				p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
				// keyplane installs no routes: the test gives A one to
				// charon's inner address (charon installs its own).
				p.A.Exec(t, "ip", "route", "add", innerS.String()+"/32", "via", p.B4.String(), "src", innerK.String())
				c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{charonConn(p, s)}})
				cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
				b, err := kernelops.Open(t.Context(), "xfrm", kernelops.Options{Params: cfg.Backend.Params})
				lab.Need(t, "XFRM backend in the namespace", err)
				t.Cleanup(func() { b.Close() })
				k := startKeyplane(t, cfg, b)
				t0 := time.Now()
				if role == "keyplane-initiates" {
					if err := k.e.Initiate(ctx, "net"); err != nil {
						diagnose(t, p)
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
				t.Logf("established in %v: keyplane %s, charon %v", time.Since(t0).Round(time.Millisecond), ksa.Role, csa)
				if hs, _ := k.e.Handshakes(ctx); len(hs) > 0 {
					t.Logf("keyplane handshake (IKE_SA_INIT sent -> child installed): %v", hs[0])
				}
				checkCrosswise(t, ksa, kch, csa, s)
				if kch.Encap != s.encap {
					t.Errorf("keyplane child encap %v, want %v", kch.Encap, s.encap)
				}
				beforeK, beforeS := xfrmBytes(t, p.A), xfrmBytes(t, p.B)
				ping(t, p.A, innerK.String(), innerS.String(), 3)
				ping(t, p.B, innerS.String(), innerK.String(), 3)
				afterK, afterS := xfrmBytes(t, p.A), xfrmBytes(t, p.B)
				cc, _ := csa.Child("kp")
				for _, x := range []struct {
					who           string
					before, after map[string][2]uint64
					spi           string
				}{
					{"keyplane out", beforeK, afterK, kch.SPIOut}, {"keyplane in", beforeK, afterK, kch.SPIIn},
					{"charon out", beforeS, afterS, cc.SPIOut}, {"charon in", beforeS, afterS, cc.SPIIn},
				} {
					bb, ab := x.before[spiKey(x.spi)], x.after[spiKey(x.spi)]
					if ab[1] < bb[1]+6 || ab[0] <= bb[0] {
						t.Errorf("%s SA %s: ip -s xfrm state counters %v -> %v, want 6 packets more (3 pings each way)", x.who, x.spi, bb, ab)
					}
				}
				t.Logf("ip -s xfrm state: keyplane %v, charon %v", afterK, afterS)
				// keyplane's own listing reads the same kernel counters.
				if _, kc2, ok := k.child(t); !ok || kc2.PacketsOut < 6 || kc2.PacketsIn < 6 {
					t.Errorf("keyplane child list counters: %+v", kc2)
				}
				if role == "keyplane-initiates" {
					if err := c.Terminate(ctx, "kp"); err != nil {
						t.Fatal(err)
					}
				} else if err := k.e.Terminate(ctx, "peer"); err != nil {
					t.Fatal(err)
				}
				if err := c.WaitGone(ctx, "kp"); err != nil {
					t.Fatal(err)
				}
				k.waitNoSAs(t, ctx)
				deadline := time.Now().Add(scale(5 * time.Second))
				for {
					ks, kp := xfrmLeft(t, p.A)
					ss, sp := xfrmLeft(t, p.B)
					if ks == "" && kp == "" && ss == "" && sp == "" {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("after delete:\nkeyplane states:\n%s\nkeyplane policies:\n%s\ncharon states:\n%s\ncharon policies:\n%s", ks, kp, ss, sp)
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
	}
}

// TestVMRekey: keyplane on XFRM rekeys its child (with PFS) on the soft
// lifetime the kernel raises; charon follows, the old SAs leave both
// kernels, and ping still passes on the new ones.
func TestVMRekey(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	s := suites[0]
	s.esp += "-x25519"
	ctx, cancel := context.WithTimeout(t.Context(), scale(60*time.Second))
	defer cancel()
	p := lab.NewPair(t)
	p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
	p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
	p.A.Exec(t, "ip", "route", "add", innerS.String()+"/32", "via", p.B4.String(), "src", innerK.String())
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{charonConn(p, s)}})
	cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name, "rekey_time = 5s", "life_time = 10m")
	b, err := kernelops.Open(t.Context(), "xfrm", kernelops.Options{Params: cfg.Backend.Params})
	lab.Need(t, "XFRM backend in the namespace", err)
	t.Cleanup(func() { b.Close() })
	k := startKeyplane(t, cfg, b)
	if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
		t.Fatal(err)
	}
	_, first := k.waitChild(t, ctx)
	// charon keeps a rekeyed inbound SA a few seconds longer
	// (delete_rekeyed_delay) and keyplane rekeys every 5 s, so what is
	// checked is that the first child's SAs left both kernels and the
	// current child's are in both.
	has := func(m map[string][2]uint64, spis ...string) bool {
		for _, s := range spis {
			if _, ok := m[spiKey(s)]; !ok {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(scale(30 * time.Second)); ; time.Sleep(100 * time.Millisecond) {
		_, kc, ok := k.child(t)
		ks := xfrmBytes(t, p.A)
		ss := xfrmBytes(t, p.B)
		gone := !has(ks, first.SPIIn) && !has(ks, first.SPIOut) && !has(ss, first.SPIIn) && !has(ss, first.SPIOut)
		if ok && kc.SPIIn != first.SPIIn && gone && len(ks) == 2 && has(ks, kc.SPIIn, kc.SPIOut) && has(ss, kc.SPIIn, kc.SPIOut) {
			{
				t.Logf("rekeyed: keyplane in %s -> %s; kernels hold %v / %v", first.SPIIn, kc.SPIIn, ks, ss)
				ping(t, p.A, innerK.String(), innerS.String(), 2)
				ping(t, p.B, innerS.String(), innerK.String(), 2)
				// Unless the next rekey replaced them meanwhile, the
				// current SAs carried the pings.
				after := xfrmBytes(t, p.A)
				if c, ok := after[spiKey(kc.SPIOut)]; ok && c[1] == 0 {
					t.Errorf("the rekeyed outbound SA carried no ping: %v", after)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			sas, _ := c.ListSAs(ctx)
			t.Fatalf("no settled rekey: keyplane %+v, charon %v, kernels %v / %v", kc, sas, ks, ss)
		}
	}
}
