package interop

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/xfrm"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
	"github.com/keyplane/keyplane/kernelops"
)

// holdXfrm is a test double around the XFRM backend: while holding, the
// CREATE_CHILD_SA datagrams that reach keyplane's sockets, and all after
// the first, are kept back, then handed to keyplane in their order on
// release. It makes two requests cross
// for certain: charon's waits at keyplane's socket until keyplane's own
// is out (and charon has answered it). Everything else is the real
// kernel and real sockets.
type holdXfrm struct {
	*xfrm.Backend
	mu    sync.Mutex
	held  bool
	queue []heldDgram
	conns []*holdConn
}

type heldDgram struct {
	b    []byte
	l, r netip.AddrPort
	err  error
}

type holdConn struct {
	kernelops.IKEConn
	h   *holdXfrm
	out chan heldDgram
}

func (b *holdXfrm) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	c, err := b.Backend.ListenIKE(ctx, l)
	if err != nil {
		return nil, err
	}
	hc := &holdConn{IKEConn: c, h: b, out: make(chan heldDgram)}
	go hc.pump()
	return hc, nil
}

// pump reads the real socket and passes datagrams on, or keeps them
// while holding.
func (c *holdConn) pump() {
	defer close(c.out)
	buf := make([]byte, 65536)
	for {
		n, l, r, err := c.IKEConn.ReadFrom(buf)
		d := heldDgram{b: append([]byte(nil), buf[:n]...), l: l, r: r, err: err}
		c.h.mu.Lock()
		// While holding, CREATE_CHILD_SA messages are kept, and
		// everything after the first kept one (their order stays); what
		// comes before it passes: charon's INFORMATIONAL just after the
		// handshake (MOBIKE's address list), held, would make it delay
		// its rekey until that exchange is answered.
		if c.h.held && err == nil && (len(c.h.queue) > 0 || isCreateChildSA(d.b)) {
			c.h.queue = append(c.h.queue, d)
			c.h.conns = append(c.h.conns, c)
			c.h.mu.Unlock()
			continue
		}
		c.out <- d // under the lock: a release delivers what it kept first
		c.h.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *holdConn) ReadFrom(p []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	d, ok := <-c.out
	if !ok {
		return 0, netip.AddrPort{}, netip.AddrPort{}, net.ErrClosed
	}
	return copy(p, d.b), d.l, d.r, d.err
}

func (b *holdXfrm) hold() {
	b.mu.Lock()
	b.held = true
	b.mu.Unlock()
}

// release hands the kept datagrams to keyplane in order, and stops
// holding.
func (b *holdXfrm) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, d := range b.queue {
		b.conns[i].out <- d
	}
	b.queue, b.conns, b.held = nil, nil, false
}

// isCreateChildSA reports whether b is an IKE message of the
// CREATE_CHILD_SA exchange (exchange type 36 at octet 18 of the header).
func isCreateChildSA(b []byte) bool { return len(b) >= 28 && b[18] == 36 }

// heldMessages counts the kept CREATE_CHILD_SA requests and responses.
func (b *holdXfrm) heldMessages() (requests, responses int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.queue {
		if isCreateChildSA(d.b) {
			if d.b[19]&0x20 != 0 {
				responses++
			} else {
				requests++
			}
		}
	}
	return requests, responses
}

// collisionLines are charon's log lines about the collision and what it
// deleted.
func collisionLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "collision") || strings.Contains(ll, "redundant") ||
			(strings.Contains(ll, "delet") && (strings.Contains(ll, "child_sa") || strings.Contains(ll, "ike_sa"))) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// collide establishes keyplane and charon (role says who initiates),
// then has both rekey at the same moment — charon through vici, keyplane
// through its API — with charon's request held at keyplane's socket until
// keyplane's own is out and answered, so that both ends see a collision.
func collide(t *testing.T, role string, ikeSA bool) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	s := suites[0]
	s.esp += "-x25519" // PFS on the rekeys
	ctx, cancel := context.WithTimeout(t.Context(), scale(90*time.Second))
	defer cancel()
	p, c, cfg := vmRig(t, s)
	xb, err := xfrm.Open(t.Context(), kernelops.Options{Params: cfg.Backend.Params})
	lab.Need(t, "XFRM backend in the namespace", err)
	t.Cleanup(func() { xb.Close() })
	hb := &holdXfrm{Backend: xb}
	k := startKeyplane(t, cfg, hb)
	if role == "keyplane-initiates" {
		if err := k.e.Initiate(ctx, "net"); err != nil {
			diagnose(t, p)
			t.Fatal(err)
		}
	} else if err := c.Initiate(ctx, "kp"); err != nil {
		t.Fatal(err)
	}
	before, beforeChild := k.waitChild(t, ctx)
	if _, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	ping(t, p.A, innerK.String(), innerS.String(), 2)

	hb.hold()
	if ikeSA {
		err = c.RekeyIKE(ctx, "kp")
	} else {
		err = c.RekeyChild(ctx, "kp")
	}
	if err != nil {
		hb.release()
		t.Fatal(err)
	}
	waitUntil(t, scale(3*time.Second), "charon's rekey request at keyplane's socket", func() bool {
		req, _ := hb.heldMessages()
		return req >= 1
	})
	if ikeSA {
		err = k.e.Rekey(ctx, "peer")
	} else {
		err = k.e.Rekey(ctx, "net")
	}
	if err != nil {
		hb.release()
		t.Fatal(err)
	}
	waitUntil(t, scale(3*time.Second), "charon's answer to keyplane's rekey", func() bool {
		_, resp := hb.heldMessages()
		return resp >= 1
	})
	hb.release()

	// Settled: one IKE SA and one child each side, crosswise, and only
	// the child's two SAs in each kernel.
	var ksa ike.IKESAInfo
	var kc ike.ChildInfo
	var csa swan.IKESA
	waitUntil(t, scale(30*time.Second), "one SA each side, crosswise", func() bool {
		sas, err := k.e.IKESAs(ctx)
		if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].State != "installed" {
			return false
		}
		ksa, kc = sas[0], sas[0].Children[0]
		csas, err := c.ListSAs(ctx)
		if err != nil || len(csas) != 1 || len(csas[0].Children) != 1 || csas[0].State != "ESTABLISHED" {
			return false
		}
		csa = csas[0]
		cc := csa.Children[0]
		if cc.State != "INSTALLED" || !strings.EqualFold(cc.SPIIn, kc.SPIOut) || !strings.EqualFold(cc.SPIOut, kc.SPIIn) {
			return false
		}
		ks, ss := xfrmBytes(t, p.A), xfrmBytes(t, p.B)
		return len(ks) == 2 && len(ss) == 2
	})
	if ikeSA {
		if ksa.SPIi == before.SPIi {
			t.Errorf("IKE SA not rekeyed: %s", ksa.SPIi)
		}
		if kc.SPIIn != beforeChild.SPIIn {
			t.Errorf("the child changed with the IKE SA: %s -> %s", beforeChild.SPIIn, kc.SPIIn)
		}
	} else if kc.SPIIn == beforeChild.SPIIn {
		t.Errorf("child not rekeyed: %s", kc.SPIIn)
	}
	checkCrosswise(t, ksa, kc, csa, s)
	for _, x := range []struct {
		ns       *lab.NS
		from, to string
	}{{p.A, innerK.String(), innerS.String()}, {p.B, innerS.String(), innerK.String()}} {
		if out, err := x.ns.Run("ping", "-c", "3", "-i", "0.2", "-W", "3", "-I", x.from, x.to); err != nil {
			for _, l := range collisionLines(c.Log()) {
				t.Logf("charon: %s", l)
			}
			for _, ns := range []*lab.NS{p.A, p.B} {
				st, _ := ns.Run("ip", "-s", "xfrm", "state")
				pol, _ := ns.Run("ip", "xfrm", "policy")
				t.Logf("%s xfrm state:\n%s\npolicy:\n%s", ns.Name, st, pol)
			}
			t.Fatalf("ping %s -> %s after the collision: %v\n%s", x.from, x.to, err, out)
		}
	}

	// What happened, from both ends.
	what := "child"
	if ikeSA {
		what = "IKE SA"
	}
	klog := k.log.String()
	switch {
	case strings.Contains(klog, what+" rekey collision won"):
		t.Logf("%s: keyplane won the %s rekey collision (charon's exchange had the lowest nonce)", role, what)
	case strings.Contains(klog, what+" rekey collision lost"):
		t.Logf("%s: keyplane lost the %s rekey collision (its exchange had the lowest nonce)", role, what)
	default:
		t.Errorf("keyplane's log shows no %s rekey collision:\n%s", what, tailLines(klog, 40))
	}
	for _, l := range collisionLines(c.Log()) {
		t.Logf("charon: %s", l)
	}
	for _, l := range strings.Split(klog, "\n") {
		if strings.Contains(l, "collision") {
			t.Logf("keyplane: %s", l)
		}
	}
	if strings.Contains(klog, "did not delete") {
		t.Errorf("keyplane had to delete what charon should have:\n%s", tailLines(klog, 40))
	}
	terminate(t, ctx, c, k, role == "charon-initiates")
	waitKernelsEmpty(t, p)
}

// TestVMChildRekeyCollision: keyplane on XFRM and charon on
// kernel-netlink rekey the same child at the same moment (RFC 7296
// §2.8.1); they end with one child, crosswise, two SAs in each kernel,
// and ping passes both ways. Run with keyplane and with charon as the
// IKE SA's initiator.
func TestVMChildRekeyCollision(t *testing.T) {
	for _, role := range []string{"keyplane-initiates", "charon-initiates"} {
		t.Run(role, func(t *testing.T) { collide(t, role, false) })
	}
}

// TestVMIKERekeyCollision: the same for the IKE SA (RFC 7296 §2.8.2):
// one IKE SA each side, the child unchanged on it, ping passing.
func TestVMIKERekeyCollision(t *testing.T) {
	for _, role := range []string{"keyplane-initiates", "charon-initiates"} {
		t.Run(role, func(t *testing.T) { collide(t, role, true) })
	}
}
