package interop

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
)

// TestVMOffload: hw_offload against the real kernel with charon as the
// peer. The guest's only device towards charon is a veth, which offloads
// nothing (the Debian kernel has no netdevsim, so no device here accepts
// offload; an accepted offload is covered on nokernel only): packet and
// crypto fail the child with the device and the kernel's reason in the
// initiate error, nothing is left in either kernel (charon was told);
// auto installs in software, says so in one line, and ping passes.
func TestVMOffload(t *testing.T) {
	lab.RequireVM(t, "kernel ESP and a real device for keyplane's XFRM backend")
	requireSwan(t)
	s := suites[0]
	for _, mode := range []string{"packet", "crypto"} {
		t.Run(mode+"-refused", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(30*time.Second))
			defer cancel()
			p, c, cfg := vmRig(t, s, "hw_offload = "+mode)
			k := startXfrmKeyplane(t, cfg)
			err := k.e.Initiate(ctx, "net")
			if err == nil {
				t.Fatalf("%s offload on veth %s: the child came up", mode, p.IfA)
			}
			var oe *kernelops.OffloadError
			if !errors.Is(err, kernelops.ErrOffload) || !errors.As(err, &oe) {
				t.Fatalf("initiate: %v, want an offload refusal", err)
			}
			if oe.Device != p.IfA || oe.Mode.String() != mode || oe.Reason == "" {
				t.Errorf("refusal %+v, want device %s, mode %s and a reason", oe, p.IfA, mode)
			}
			t.Logf("initiate reply: %v", err)
			if !strings.Contains(k.log.String(), "refused "+mode+" offload") {
				t.Errorf("keyplane's log does not say what was refused")
			}
			if _, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
				t.Fatal(err)
			}
			waitKernelsEmpty(t, p)
		})
	}
	t.Run("auto-falls-back", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), scale(30*time.Second))
		defer cancel()
		p, c, cfg := vmRig(t, s, "hw_offload = auto")
		k := startXfrmKeyplane(t, cfg)
		if err := k.e.Initiate(ctx, "net"); err != nil {
			diagnose(t, p)
			t.Fatalf("initiate: %v", err)
		}
		_, kch := k.waitChild(t, ctx)
		if kch.Offload != "no" {
			t.Errorf("child offload %q on veth, want no", kch.Offload)
		}
		var line string
		for _, l := range strings.Split(k.log.String(), "\n") {
			if strings.Contains(l, "hw_offload auto fell back") {
				line = l
			}
		}
		if !strings.Contains(line, "device="+p.IfA) || !strings.Contains(line, "esp-hw-offload=off") {
			t.Errorf("fall-back line %q: want the device and its feature bits", line)
		}
		t.Logf("%s", line)
		ping(t, p.A, innerK.String(), innerS.String(), 3)
		terminate(t, ctx, c, k, false)
		waitKernelsEmpty(t, p)
	})
}
