package interop

import (
	"context"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
)

// TestVMAlgorithms: the key exchange groups ECP-384/521 and
// MODP-3072/4096, HMAC-SHA1 integrity and PRF, and AES-CCM for ESP,
// between keyplane on XFRM (namespace A) and charon on kernel-netlink
// (namespace B) with real ESP: each suite negotiated as charon reports it
// and ping passing both ways through the kernel SAs.
func TestVMAlgorithms(t *testing.T) {
	lab.RequireVM(t, "kernel ESP (with CCM) for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	for _, c := range []struct {
		s             suite
		charonStarts  bool
		childEncr     string
		childInteg    string
		ikeInteg, prf string
	}{
		{suite{ike: "aes256gcm16-prfsha384-ecp384", esp: "aes256gcm16", encr: "AES_GCM_16", dh: "ECP_384"}, false, "AES_GCM_16", "", "", "PRF_HMAC_SHA2_384"},
		{suite{ike: "aes256-sha512-ecp521", esp: "aes128ccm16", encr: "AES_CBC", dh: "ECP_521"}, true, "AES_CCM_16", "", "HMAC_SHA2_512_256", "PRF_HMAC_SHA2_512"},
		{suite{ike: "aes128-sha256-modp3072", esp: "aes128-sha1", encr: "AES_CBC", dh: "MODP_3072"}, false, "AES_CBC", "HMAC_SHA1_96", "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256"},
		{suite{ike: "aes128-sha1-modp4096", esp: "aes256ccm8", encr: "AES_CBC", dh: "MODP_4096"}, true, "AES_CCM_8", "", "HMAC_SHA1_96", "PRF_HMAC_SHA1"},
	} {
		role := "keyplane-initiates"
		if c.charonStarts {
			role = "charon-initiates"
		}
		t.Run(c.s.ike+"/"+c.s.esp+"/"+role, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(40*time.Second))
			defer cancel()
			p, ch, cfg := vmRig(t, c.s)
			k := startXfrmKeyplane(t, cfg)
			if c.charonStarts {
				if err := ch.Initiate(ctx, "kp"); err != nil {
					t.Fatalf("charon initiate: %v", err)
				}
			} else if err := k.e.Initiate(ctx, "net"); err != nil {
				diagnose(t, p)
				t.Fatalf("keyplane initiate: %v", err)
			}
			ksa, kch := k.waitChild(t, ctx)
			csa, err := ch.WaitIKE(ctx, "kp", "ESTABLISHED")
			if err != nil {
				t.Fatal(err)
			}
			checkCrosswise(t, ksa, kch, csa, c.s)
			if csa.IntegAlg != c.ikeInteg || csa.PRFAlg != c.prf {
				t.Errorf("charon's IKE SA: integrity %q, PRF %q; want %q, %q", csa.IntegAlg, csa.PRFAlg, c.ikeInteg, c.prf)
			}
			cc, _ := csa.Child("kp")
			if cc.EncrAlg != c.childEncr || cc.IntegAlg != c.childInteg {
				t.Errorf("charon's child: %s/%s, want %s/%s", cc.EncrAlg, cc.IntegAlg, c.childEncr, c.childInteg)
			}
			t.Logf("keyplane %s %s; child %s", ksa.Role, ksa.Suite, kch.Suite)
			before := xfrmBytes(t, p.A)
			ping(t, p.A, innerK.String(), innerS.String(), 2)
			ping(t, p.B, innerS.String(), innerK.String(), 2)
			after := xfrmBytes(t, p.A)
			for _, spi := range []string{kch.SPIIn, kch.SPIOut} {
				if b, a := before[spiKey(spi)], after[spiKey(spi)]; a[1] < b[1]+4 {
					t.Errorf("keyplane SA %s: packets %d -> %d, want 4 more (2 pings each way)", spi, b[1], a[1])
				}
			}
			terminate(t, ctx, ch, k, !c.charonStarts)
			waitKernelsEmpty(t, p)
		})
	}
}
