package ike

import (
	"testing"
)

// TestNewAlgorithms negotiates the key exchange groups, SHA-1 suites and
// ESP AES-CCM that issue 15 adds to ikecrypto and the proposal keywords,
// engine to engine over loopback (nokernel dataplanes): IKE SA and child
// come up with the same SPIs on both ends and the child was installed with
// the chosen ESP transform. The VM interop tests check them against
// strongSwan.
func TestNewAlgorithms(t *testing.T) {
	noLeaks(t)
	for _, suite := range []struct{ ike, esp, ikeSuite, childSuite string }{
		{"aes256gcm16-prfsha384-ecp384", "aes256gcm16", "ENCR_AES_GCM_16/256-NONE-PRF_HMAC_SHA2_384-ECP_384", "ENCR_AES_GCM_16/256"},
		{"aes256gcm16-prfsha512-ecp521", "aes128ccm16", "ENCR_AES_GCM_16/256-NONE-PRF_HMAC_SHA2_512-ECP_521", "ENCR_AES_CCM_16/128"},
		{"aes128-sha256-modp3072", "aes256ccm8-ecp384", "ENCR_AES_CBC/128-AUTH_HMAC_SHA2_256_128-PRF_HMAC_SHA2_256-MODP_3072", "ENCR_AES_CCM_8/256"},
		{"aes256-sha512-modp4096", "aes192ccm12", "ENCR_AES_CBC/256-AUTH_HMAC_SHA2_512_256-PRF_HMAC_SHA2_512-MODP_4096", "ENCR_AES_CCM_12/192"},
		{"aes128-sha1-modp2048", "aes128-sha1", "ENCR_AES_CBC/128-AUTH_HMAC_SHA1_96-PRF_HMAC_SHA1-MODP_2048", "ENCR_AES_CBC/128-AUTH_HMAC_SHA1_96"},
		{"aes128-sha1-prfsha1-ecp256", "aes128gcm16", "ENCR_AES_CBC/128-AUTH_HMAC_SHA1_96-PRF_HMAC_SHA1-ECP_256", "ENCR_AES_GCM_16/128"},
	} {
		t.Run(suite.ike+"/"+suite.esp, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.proposals, sb.proposals, sa.esp, sb.esp = suite.ike, suite.ike, suite.esp, suite.esp
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			ia, ib := a.sas(t)[0], b.sas(t)[0]
			if ia.SPIi != ib.SPIi || ia.SPIr != ib.SPIr || ia.State != "established" {
				t.Fatalf("IKE SAs differ: %+v / %+v", ia, ib)
			}
			ca, cb := ia.Children[0], ib.Children[0]
			if ca.SPIIn != cb.SPIOut || ca.SPIOut != cb.SPIIn {
				t.Errorf("SPIs not crosswise: a in %s out %s, b in %s out %s", ca.SPIIn, ca.SPIOut, cb.SPIIn, cb.SPIOut)
			}
			if ia.Suite != suite.ikeSuite || ib.Suite != suite.ikeSuite || ca.Suite != suite.childSuite || cb.Suite != suite.childSuite {
				t.Errorf("suites %s / %s, children %s / %s", ia.Suite, ib.Suite, ca.Suite, cb.Suite)
			}
		})
	}
}
