package interop

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/xfrm"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
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

// waitKernelsEmpty waits until neither namespace of p holds an XFRM state
// or policy (charon may remove its own a little after it lists the IKE SA
// gone).
func waitKernelsEmpty(t *testing.T, p *lab.Pair) {
	t.Helper()
	for deadline := time.Now().Add(scale(5 * time.Second)); ; time.Sleep(100 * time.Millisecond) {
		ks, kp := xfrmLeft(t, p.A)
		ss, sp := xfrmLeft(t, p.B)
		if ks == "" && kp == "" && ss == "" && sp == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after delete:\nkeyplane states:\n%s\nkeyplane policies:\n%s\ncharon states:\n%s\ncharon policies:\n%s", ks, kp, ss, sp)
		}
	}
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

// vmRig sets up the VM rig for suite s: namespaces A (keyplane) and B
// (charon with kernel-netlink, its connection loaded), the inner
// addresses on their loopbacks, and A's route to charon's (keyplane
// installs no routes; charon installs its own). It returns keyplane's
// configuration for the XFRM backend in A, to adjust before
// startXfrmKeyplane.
func vmRig(t *testing.T, s suite, childExtra ...string) (*lab.Pair, *swan.Charon, *config.Config) {
	t.Helper()
	p := lab.NewPair(t)
	p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
	p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
	p.A.Exec(t, innerRoute(p)...)
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{charonConn(p, s)}})
	return p, c, keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name, childExtra...)
}

// innerRoute is the command that routes A's traffic for charon's inner
// address through B.
func innerRoute(p *lab.Pair) []string {
	return []string{"ip", "route", "add", innerS.String() + "/32", "via", p.B4.String(), "src", innerK.String()}
}

// startXfrmKeyplane runs keyplane with cfg on the XFRM backend in A.
func startXfrmKeyplane(t *testing.T, cfg *config.Config) *keyplane {
	t.Helper()
	b, err := kernelops.Open(t.Context(), "xfrm", kernelops.Options{Params: cfg.Backend.Params})
	lab.Need(t, "XFRM backend in the namespace", err)
	t.Cleanup(func() { b.Close() })
	return startKeyplane(t, cfg, b)
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
				p, c, cfg := vmRig(t, s)
				k := startXfrmKeyplane(t, cfg)
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
				terminate(t, ctx, c, k, role == "keyplane-initiates")
				waitKernelsEmpty(t, p)
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
	p, c, cfg := vmRig(t, s, "rekey_time = 5s", "life_time = 10m")
	k := startXfrmKeyplane(t, cfg)
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

// TestVMIKERekey: keyplane on XFRM and charon on kernel-netlink rekey
// the IKE SA, charon first, then keyplane. The kernel SAs of the child
// stay as they were, and ping passes through them after each rekey; the
// delete over the rekeyed SA empties both kernels.
func TestVMIKERekey(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	s := suites[1]
	ctx, cancel := context.WithTimeout(t.Context(), scale(60*time.Second))
	defer cancel()
	p, c, cfg := vmRig(t, s)
	cfg.Connection("peer").RekeyTime = 0
	k := startXfrmKeyplane(t, cfg)
	if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
		t.Fatal(err)
	}
	first, child := k.waitChild(t, ctx)
	before := xfrmBytes(t, p.A)
	// rekeyed waits until both ends hold one IKE SA on SPIs other than
	// prev's, keyplane's child unchanged.
	rekeyed := func(prev ike.IKESAInfo) ike.IKESAInfo {
		t.Helper()
		for deadline := time.Now().Add(scale(20 * time.Second)); ; time.Sleep(50 * time.Millisecond) {
			ksa, kc, ok := k.child(t)
			csas, _ := c.ListSAs(ctx)
			if ok && ksa.SPIi != prev.SPIi && len(csas) == 1 && csas[0].State == "ESTABLISHED" &&
				(strings.EqualFold(csas[0].LocalSPI, ksa.SPIi) || strings.EqualFold(csas[0].LocalSPI, ksa.SPIr)) {
				if kc.SPIIn != child.SPIIn || kc.SPIOut != child.SPIOut {
					t.Errorf("the child changed with the IKE SA: %+v, was %+v", kc, child)
				}
				if sas, _ := k.e.IKESAs(ctx); len(sas) == 1 {
					return ksa
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("IKE SA rekey did not settle: keyplane %+v, charon %+v", ksa, csas)
			}
		}
	}
	if err := c.RekeyIKE(ctx, "kp"); err != nil {
		t.Fatal(err)
	}
	second := rekeyed(first)
	t.Logf("charon rekeyed the IKE SA: %s_i %s_r -> %s_i %s_r (keyplane now %s)", first.SPIi, first.SPIr, second.SPIi, second.SPIr, second.Role)
	ping(t, p.A, innerK.String(), innerS.String(), 2)
	cfg2 := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
	cfg2.Connection("peer").RekeyTime = scale(time.Second)
	if err := k.e.Reload(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	third := rekeyed(second)
	cfg2.Connection("peer").RekeyTime = 0
	if err := k.e.Reload(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	t.Logf("keyplane rekeyed the IKE SA: -> %s_i %s_r (keyplane now %s)", third.SPIi, third.SPIr, third.Role)
	if third.Role != "initiator" {
		t.Errorf("keyplane rekeyed but is %s of the new IKE SA", third.Role)
	}
	ping(t, p.B, innerS.String(), innerK.String(), 2)
	after := xfrmBytes(t, p.A)
	for _, spi := range []string{child.SPIIn, child.SPIOut} {
		if after[spiKey(spi)][1] < before[spiKey(spi)][1]+4 {
			t.Errorf("SA %s did not carry the 4 pings each way: %v -> %v", spi, before, after)
		}
	}
	if len(after) != 2 {
		t.Errorf("keyplane's kernel holds %d SAs, want the child's 2: %v", len(after), after)
	}
	terminate(t, ctx, c, k, true)
	waitKernelsEmpty(t, p)
}

// tapXfrm is a test double around the XFRM backend: it records the IKE
// datagrams keyplane writes; everything else is the real kernel.
type tapXfrm struct {
	*xfrm.Backend
	mu   sync.Mutex
	sent []tapped
}

type tapped struct {
	exch     byte
	response bool
}

func (b *tapXfrm) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	c, err := b.Backend.ListenIKE(ctx, l)
	if err != nil {
		return nil, err
	}
	return &tapXfrmConn{IKEConn: c, b: b}, nil
}

type tapXfrmConn struct {
	kernelops.IKEConn
	b *tapXfrm
}

func (c *tapXfrmConn) WriteTo(p []byte, local, remote netip.AddrPort) (int, error) {
	if len(p) >= 28 {
		c.b.mu.Lock()
		c.b.sent = append(c.b.sent, tapped{exch: p[18], response: p[19]&0x20 != 0})
		c.b.mu.Unlock()
	}
	return c.IKEConn.WriteTo(p, local, remote)
}

func (b *tapXfrm) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sent)
}

// since returns all datagrams and the INFORMATIONAL requests after mark.
func (b *tapXfrm) since(mark int) (all, checks int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.sent[mark:] {
		all++
		if m.exch == 37 && !m.response { // INFORMATIONAL
			checks++
		}
	}
	return all, checks
}

// TestVMIdleAndLinkDown: keyplane on XFRM (idle detection from the
// kernel's byte counters, one SA dump per scan) against charon. Pings
// into the tunnel keep keyplane from sending liveness checks; once they
// stop, a check goes out after dpd_delay. Then keyplane's link goes down
// (ip link set down): for several times dpd_delay plus the give-up time
// keyplane sends no datagram and keeps the SA; when the link comes back
// it revives the SA with a check that charon answers, and ping passes.
func TestVMIdleAndLinkDown(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	s := suites[0]
	ctx, cancel := context.WithTimeout(t.Context(), scale(90*time.Second))
	defer cancel()
	p, c, cfg := vmRig(t, s)
	const dpd = 3 * time.Second
	cfg.Connections[0].DPDDelay = dpd
	xb, err := xfrm.Open(t.Context(), kernelops.Options{Params: cfg.Backend.Params, IdleScanInterval: 500 * time.Millisecond})
	lab.Need(t, "XFRM backend in the namespace", err)
	t.Cleanup(func() { xb.Close() })
	tb := &tapXfrm{Backend: xb}
	if !tb.Capabilities().Has(kernelops.CapIdle) || !tb.Capabilities().Has(kernelops.CapChangeEvents) {
		t.Fatalf("the XFRM backend lacks idle or change events: %v", tb.Capabilities())
	}
	k := startKeyplane(t, cfg, tb)
	evs := k.e.Subscribe()
	defer evs.Close()
	if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
		t.Fatal(err)
	}
	k.waitChild(t, ctx)
	// Established: now giving up takes only 0.5+0.75+1.125s, and the
	// outage below lasts far longer.
	short := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
	short.Connections[0].DPDDelay = dpd
	short.Daemon.RetransmitTimeout, short.Daemon.RetransmitTries, short.Daemon.RetransmitBase = 500*time.Millisecond, 2, 1.5
	if err := k.e.Reload(ctx, short); err != nil {
		t.Fatal(err)
	}

	// Traffic from charon for 2.5 x dpd_delay: no check.
	ping(t, p.B, innerS.String(), innerK.String(), 2)
	mark := tb.mark()
	ping(t, p.B, innerS.String(), innerK.String(), int(5*dpd/(2*200*time.Millisecond)))
	if _, checks := tb.since(mark); checks != 0 {
		t.Errorf("%d liveness checks while charon's pings arrived", checks)
	}
	// Idle: a check within dpd_delay plus a few scans.
	waitUntil(t, scale(dpd+3*time.Second), "a liveness check once idle", func() bool { _, n := tb.since(mark); return n >= 1 })

	// The link goes down.
	waitEv := func(what string, f func(ike.Event) bool) ike.Event {
		t.Helper()
		for {
			select {
			case ev, ok := <-evs.C:
				if !ok {
					t.Fatalf("event stream closed waiting for %s", what)
				}
				if f(ev) {
					return ev
				}
			case <-ctx.Done():
				t.Fatalf("no %s event", what)
			}
		}
	}
	time.Sleep(time.Second) // the check's answer
	mark = tb.mark()
	p.A.Exec(t, "ip", "link", "set", p.IfA, "down")
	ev := waitEv("link down", func(e ike.Event) bool { return e.Kind == "link" && e.State == "down" })
	if !strings.HasPrefix(ev.Detail, "1 IKE SAs suspended") {
		t.Errorf("link down event %+v, want 1 IKE SA suspended", ev)
	}
	time.Sleep(3 * dpd)
	if all, _ := tb.since(mark); all != 0 {
		t.Errorf("%d datagrams sent while the link was down", all)
	}
	if _, _, ok := k.child(t); !ok {
		t.Fatalf("the IKE SA or child is gone after the outage")
	}

	// The link returns: one check, answered; traffic flows.
	mark = tb.mark()
	p.A.Exec(t, "ip", "link", "set", p.IfA, "up")
	waitEv("revival", func(e ike.Event) bool { return e.Kind == "link" && e.State == "revived" })
	waitUntil(t, scale(5*time.Second), "the revival check", func() bool { _, n := tb.since(mark); return n >= 1 })
	p.A.Run(innerRoute(p)...) // the kernel dropped it with the link
	ping(t, p.A, innerK.String(), innerS.String(), 3)
	time.Sleep(2 * time.Second)
	if _, _, ok := k.child(t); !ok {
		t.Errorf("the SA did not survive the revival")
	}
	if sa, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
		t.Errorf("charon: %v", err)
	} else {
		t.Logf("charon still has %v", sa)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
