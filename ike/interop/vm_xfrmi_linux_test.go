package interop

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
)

// TestVMRouteBasedInterface: as TestVMRouteBased, but keyplane creates
// the XFRM interface itself (xfrm_interface = xfrm42): it appears with
// if_id 42 when the child installs, ping routed into it passes both ways
// against charon with the SA counters moving, and it is gone with the
// child and again at daemon stop.
func TestVMRouteBasedInterface(t *testing.T) {
	lab.RequireVM(t, "kernel ESP and XFRM interfaces for keyplane's XFRM backend")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(60*time.Second))
	defer cancel()
	p, c, cfg := vmRig(t, suites[0], "if_id_in = 42", "if_id_out = 42", "xfrm_interface = xfrm42")
	linked := func() string {
		out, err := p.A.Run("ip", "-d", "link", "show", "xfrm42")
		if err != nil {
			return ""
		}
		return out
	}
	k := startXfrmKeyplane(t, cfg)
	if l := linked(); l != "" {
		t.Fatalf("xfrm42 exists before the child installs:\n%s", l)
	}
	if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
		t.Fatalf("initiate: %v", err)
	}
	k.waitChild(t, ctx)
	if _, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	if l := linked(); !strings.Contains(l, "if_id 0x2a") {
		t.Fatalf("xfrm42 after install, want an xfrm interface with if_id 0x2a:\n%s", l)
	}
	p.A.Exec(t, "ip", "route", "replace", innerS.String()+"/32", "dev", "xfrm42", "src", innerK.String())
	before := xfrmBytes(t, p.A)
	ping(t, p.A, innerK.String(), innerS.String(), 3)
	ping(t, p.B, innerS.String(), innerK.String(), 3)
	_, kch, _ := k.child(t)
	after := xfrmBytes(t, p.A)
	for _, spi := range []string{kch.SPIIn, kch.SPIOut} {
		if b, a := before[spiKey(spi)], after[spiKey(spi)]; a[1] < b[1]+6 {
			t.Errorf("SA %s: packets %d -> %d, want 6 more through keyplane's XFRM interface", spi, b[1], a[1])
		}
	}
	terminate(t, ctx, c, k, false)
	waitKernelsEmpty(t, p)
	if l := linked(); l != "" {
		t.Errorf("xfrm42 left after its only child was deleted:\n%s", l)
	}

	// Up again, then the daemon stops: the interface goes with it.
	if err := k.e.Initiate(ctx, "net"); err != nil {
		t.Fatalf("initiate again: %v", err)
	}
	k.waitChild(t, ctx)
	if linked() == "" {
		t.Fatal("xfrm42 missing after the second install")
	}
	if err := k.e.Close(); err != nil {
		t.Fatal(err)
	}
	if l := linked(); l != "" {
		t.Errorf("xfrm42 left after the daemon stopped:\n%s", l)
	}
	if st, pol := xfrmLeft(t, p.A); st != "" || pol != "" {
		t.Errorf("left in keyplane's kernel after stop:\n%s\n%s", st, pol)
	}
}

// TestVMRouteBasedMarks: keyplane's child with mark_in = 0x2a/0xff and
// mark_out = 43 against charon: the kernel's inbound SA and in/fwd
// policies carry mark 0x2a/0xff, the outbound SA and out policy
// 0x2b/0xffffffff; an unmarked ping matches no policy of the child (its
// outbound SA counts nothing), a ping with SO_MARK 43 is encrypted (the
// outbound SA counts it). The replies are not marked on the way in, so
// they find no inbound SA: that side is checked in the kernel's tables
// only.
func TestVMRouteBasedMarks(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(40*time.Second))
	defer cancel()
	p, c, cfg := vmRig(t, suites[0], "mark_in = 0x2a/0xff", "mark_out = 43")
	k := startXfrmKeyplane(t, cfg)
	if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
		t.Fatalf("initiate: %v", err)
	}
	k.waitChild(t, ctx)
	if _, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	states := p.A.Exec(t, "ip", "xfrm", "state")
	for _, m := range []string{"mark 0x2a/0xff", "mark 0x2b/0xffffffff"} {
		if n := strings.Count(states, m); n != 1 {
			t.Errorf("ip xfrm state shows %q on %d SAs, want 1:\n%s", m, n, states)
		}
	}
	pols := p.A.Exec(t, "ip", "xfrm", "policy")
	for m, want := range map[string]int{"mark 0x2a/0xff": 2, "mark 0x2b/0xffffffff": 1} {
		if n := strings.Count(pols, m); n != want {
			t.Errorf("ip xfrm policy shows %q on %d policies, want %d:\n%s", m, n, want, pols)
		}
	}
	_, kch, _ := k.child(t)
	out := spiKey(kch.SPIOut)
	before := xfrmBytes(t, p.A)[out]
	if o, err := p.A.Run("ping", "-c", "1", "-W", "1", "-I", innerK.String(), innerS.String()); err == nil {
		t.Errorf("an unmarked ping passed (charon should drop it unencrypted):\n%s", o)
	}
	if a := xfrmBytes(t, p.A)[out]; a[1] != before[1] {
		t.Errorf("outbound SA counted %d packets of an unmarked ping, want 0", a[1]-before[1])
	}
	_, _ = p.A.Run("ping", "-c", "3", "-i", "0.2", "-W", "1", "-m", "43", "-I", innerK.String(), innerS.String())
	if a := xfrmBytes(t, p.A)[out]; a[1] < before[1]+3 {
		t.Errorf("outbound SA packets %d -> %d after 3 pings with mark 43, want 3 more", before[1], a[1])
	}
	terminate(t, ctx, c, k, false)
	waitKernelsEmpty(t, p)
}
