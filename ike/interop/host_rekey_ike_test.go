package interop

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/config"
)

// TestHostIKERekey: IKE SA rekeying (CREATE_CHILD_SA with an IKE
// proposal, RFC 7296 §2.18) with charon, started by either end. Each time
// both ends hold one IKE SA on new SPIs that agree, the end that rekeyed
// is its initiator, the old IKE SA is gone from both, and the child rides
// over unchanged. The rekeyed SA then carries a child rekey and the final
// delete, which only work if both derived the same new keys and reset
// their message IDs.
func TestHostIKERekey(t *testing.T) {
	requireSwan(t)
	for i, by := range []string{"keyplane", "charon"} {
		s := suites[i%len(suites)]
		t.Run(by+"-rekeys/"+s.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(60*time.Second))
			defer cancel()
			p, c, _, k := hostRig(t, s, func(cfg *config.Config) {
				cfg.Connection("peer").RekeyTime = 0
				if by == "keyplane" {
					cfg.Connection("peer").RekeyTime = scale(2 * time.Second)
				}
			})
			if err := k.e.Initiate(ctx, "net"); err != nil {
				t.Fatal(err)
			}
			first, firstChild := k.waitChild(t, ctx)
			// settled waits for one IKE SA on both ends, on SPIs other
			// than prev's, agreeing, with the child installed on both.
			settled := func(prevI, prevR string) (string, string) {
				t.Helper()
				var last string
				for deadline := time.Now().Add(scale(20 * time.Second)); ; time.Sleep(50 * time.Millisecond) {
					ksas, err := k.e.IKESAs(ctx)
					if err != nil {
						t.Fatal(err)
					}
					csas, err := c.ListSAs(ctx)
					if err != nil {
						t.Fatal(err)
					}
					last = fmt.Sprintf("keyplane %+v; charon %+v", ksas, csas)
					if len(ksas) == 1 && len(csas) == 1 && ksas[0].State == "established" && csas[0].State == "ESTABLISHED" &&
						ksas[0].SPIi != prevI && ksas[0].SPIr != prevR {
						ks, cs := ksas[0], csas[0]
						kSPIs := []string{ks.SPIi, ks.SPIr}
						cSPIs := []string{cs.RemoteSPI, cs.LocalSPI} // charon's local SPI is keyplane's r or i
						if ks.Role == "responder" {
							cSPIs = []string{cs.LocalSPI, cs.RemoteSPI}
						}
						if strings.EqualFold(kSPIs[0], cSPIs[0]) && strings.EqualFold(kSPIs[1], cSPIs[1]) &&
							len(ks.Children) == 1 && len(cs.Children) == 1 && ks.Children[0].State == "installed" && cs.Children[0].State == "INSTALLED" {
							wantInitiator := by == "keyplane"
							if (ks.Role == "initiator") != wantInitiator || cs.Initiator == wantInitiator {
								t.Errorf("after %s's rekey: keyplane is %s, charon initiator %v", by, ks.Role, cs.Initiator)
							}
							return ks.SPIi, ks.SPIr
						}
					}
					if time.Now().After(deadline) {
						t.Fatalf("the IKE SA rekey did not settle: %s", last)
					}
				}
			}
			spii, spir := first.SPIi, first.SPIr
			for n := 1; n <= 2; n++ {
				if by == "charon" {
					if err := c.RekeyIKE(ctx, "kp"); err != nil {
						t.Fatal(err)
					}
				}
				ni, nr := settled(spii, spir)
				t.Logf("rekey %d by %s: IKE SPIs %s_i %s_r -> %s_i %s_r", n, by, spii, spir, ni, nr)
				spii, spir = ni, nr
			}
			if _, kc, _ := k.child(t); kc.SPIIn != firstChild.SPIIn || kc.SPIOut != firstChild.SPIOut {
				t.Errorf("the child changed with the IKE SA: %+v, was %+v", kc, firstChild)
			}
			log := k.log.String()
			want := "peer rekeys the IKE SA"
			if by == "keyplane" {
				want = "rekeying the IKE SA"
			}
			if !strings.Contains(log, want) && !strings.Contains(log, "rekeyed by peer") {
				t.Errorf("keyplane's log lacks %q", want)
			}
			// A child rekey by charon on the rekeyed IKE SA.
			if by == "keyplane" {
				// Stop keyplane's IKE rekeys first: the child rekey must
				// not meet one (that is the collision test's business).
				cfg := keyplaneConfig(t, p, s, "nokernel", "")
				cfg.Connection("peer").RekeyTime = 0
				if err := k.e.Reload(ctx, cfg); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.RekeyChild(ctx, "kp"); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(scale(20 * time.Second)); ; time.Sleep(50 * time.Millisecond) {
				_, kc, ok := k.child(t)
				csas, _ := c.ListSAs(ctx)
				if ok && kc.SPIIn != firstChild.SPIIn && len(csas) == 1 && len(csas[0].Children) == 1 &&
					strings.EqualFold(csas[0].Children[0].SPIOut, kc.SPIIn) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("charon's child rekey over the rekeyed IKE SA did not settle: charon %+v", csas)
				}
			}
			// Delete from keyplane, over the rekeyed SA.
			terminate(t, ctx, c, k, false)
			if n, m := k.dataplaneCounts(t); n != 0 || m != 0 {
				t.Errorf("keyplane's dataplane after delete: %d SAs, %d policies", n, m)
			}
			for _, bad := range []string{"level=WARN", "level=ERROR"} {
				if strings.Contains(log, bad) {
					t.Errorf("keyplane logged %s:\n%s", bad, tailLines(log, 60))
				}
			}
		})
	}
}
