package interop

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
	"github.com/keyplane/keyplane/internal/testpki"
	"github.com/keyplane/keyplane/kernelops"
)

// hostPubkeyRig is hostRig with certificates: charon (kernel-libipsec)
// authenticates with pk under extra settings; cfg makes keyplane's
// configuration (nokernel, its sockets in A).
func hostPubkeyRig(t *testing.T, s suite, pk *swan.Pubkey, settings map[string]string, cfg func(p *lab.Pair) *config.Config) (*lab.Pair, *swan.Charon, *keyplane) {
	t.Helper()
	p := lab.NewPair(t)
	p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
	conn := charonConn(p, s)
	if pk != nil {
		conn.PSK, conn.Pubkey = "", pk
	}
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.LibIPsec, Conns: []swan.Conn{conn}, Settings: settings})
	nk, err := nokernel.Open(t.Context(), kernelops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nk.Close() })
	return p, c, startKeyplane(t, cfg(p), &inNS{Backend: nk, ns: p.A})
}

// TestHostPubkey: certificate authentication against charon on the host
// (kernel-libipsec; the IKE side only, the host has no ESP): RFC 7427
// ECDSA both roles; charon without RFC 7427 (the classic RSA method);
// IKE fragmentation both ways with fragment_size = 576 and RSA-3072
// chains; and keyplane refusing a charon certificate from an untrusted
// CA with AUTHENTICATION_FAILED. The VM tests repeat these with kernel
// ESP and traffic.
func TestHostPubkey(t *testing.T) {
	requireSwan(t)
	s := pubkeySuite
	p256, rsa := newPKRigT(t, "p256"), newPKRigT(t, "rsa3072")
	for _, c := range []struct {
		name         string
		r            *pkRig
		charonStarts bool
		settings     map[string]string
		kdaemon      string
		keyplaneSays []string
		charonSays   []string
	}{
		{name: "ecdsa/keyplane-initiates", r: p256, keyplaneSays: []string{`scheme=ecdsa-with-SHA256`}},
		{name: "ecdsa/charon-initiates", r: p256, charonStarts: true, keyplaneSays: []string{`scheme=ecdsa-with-SHA256`}},
		{name: "rsa-classic", r: rsa, settings: map[string]string{"signature_authentication": "no"},
			keyplaneSays: []string{`scheme="RSA_SIG (PKCS#1 v1.5, SHA-1)"`}},
		{name: "fragments/keyplane-initiates", r: rsa, settings: map[string]string{"fragment_size": "576", "rsa_pss": "yes"},
			kdaemon: "fragment_size = 576", keyplaneSays: []string{"sending in fragments", "reassembled"},
			charonSays: []string{"reassembled fragmented IKE message"}},
		{name: "fragments/charon-initiates", r: rsa, charonStarts: true, settings: map[string]string{"fragment_size": "576", "rsa_pss": "yes"},
			kdaemon: "fragment_size = 576", keyplaneSays: []string{"sending in fragments", "reassembled"},
			charonSays: []string{"reassembled fragmented IKE message"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(30*time.Second))
			defer cancel()
			_, ch, k := hostPubkeyRig(t, s, c.r.charon(t), c.settings, func(p *lab.Pair) *config.Config {
				return pubkeyConfig(t, p, s, c.r.keyplaneFiles(t), "nokernel", c.kdaemon, "")
			})
			if c.charonStarts {
				if err := ch.Initiate(ctx, "kp"); err != nil {
					t.Fatalf("charon initiate: %v", err)
				}
			} else if err := k.e.Initiate(ctx, "net"); err != nil {
				t.Fatalf("keyplane initiate: %v", err)
			}
			ksa, kch := k.waitChild(t, ctx)
			csa, err := ch.WaitIKE(ctx, "kp", "ESTABLISHED")
			if err != nil {
				t.Fatal(err)
			}
			checkCrosswise(t, ksa, kch, csa, s)
			for _, want := range c.keyplaneSays {
				if !strings.Contains(k.log.String(), want) {
					t.Errorf("keyplane's log lacks %q", want)
				}
			}
			for _, want := range append([]string{"authentication of 'a.keyplane.test' with"}, c.charonSays...) {
				if err := ch.WaitLog(ctx, want); err != nil {
					t.Error(err)
				}
			}
			for _, l := range strings.Split(ch.Log(), "\n") {
				if strings.Contains(l, "authentication of") || strings.Contains(l, "fragment") {
					t.Logf("charon: %s", strings.TrimSpace(l))
				}
			}
			terminate(t, ctx, ch, k, !c.charonStarts)
		})
	}
	t.Run("untrusted-ca", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), scale(30*time.Second))
		defer cancel()
		// charon trusts keyplane, but its own certificate comes from a
		// PKI keyplane does not trust.
		other := newPKRigT(t, "p256")
		pk := other.charon(t)
		pk.CACerts = [][]byte{testpki.CertPEM(p256.kp.Root.X509)}
		_, ch, k := hostPubkeyRig(t, s, pk, nil, func(p *lab.Pair) *config.Config {
			return pubkeyConfig(t, p, s, p256.keyplaneFiles(t), "nokernel", "", "")
		})
		ne := wantAuthFailed(t, k.e.Initiate(ctx, "net"), false)
		t.Logf("keyplane: %v", ne)
		if !strings.Contains(k.log.String(), "certificate not issued by a trusted CA") {
			t.Error("keyplane's log does not say why")
		}
		if err := ch.WaitLog(ctx, "AUTH_FAILED"); err != nil {
			t.Error(err)
		}
	})
}

// TestHostIntermediateFallback: charon 5.9.8 predates RFC 9242/9370; it
// finds an unknown transform type (ADDKE1) in keyplane's hybrid proposal
// and takes the classic one listed after it, and keyplane runs no
// IKE_INTERMEDIATE. (TestVMIntermediateFallback adds traffic.)
func TestHostIntermediateFallback(t *testing.T) {
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(30*time.Second))
	defer cancel()
	s := suite{ike: "aes256gcm16-prfsha384-x25519", esp: "aes128gcm16", encr: "AES_GCM_16", dh: "CURVE_25519"}
	_, c, _, k := hostRig(t, s, func(cfg *config.Config) {
		ps, err := config.ParseProposals("aes256gcm16-prfsha384-x25519-ke1_mlkem768, aes256gcm16-prfsha384-x25519", true)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Connection("peer").Proposals = ps
	})
	if err := k.e.Initiate(ctx, "net"); err != nil {
		t.Fatalf("keyplane initiate: %v", err)
	}
	ksa, kch := k.waitChild(t, ctx)
	csa, err := c.WaitIKE(ctx, "kp", "ESTABLISHED")
	if err != nil {
		t.Fatal(err)
	}
	checkCrosswise(t, ksa, kch, csa, s)
	if strings.Contains(ksa.Suite, "ML_KEM") || strings.Contains(k.log.String(), "IKE_INTERMEDIATE request") {
		t.Errorf("keyplane negotiated %s with an IKE_INTERMEDIATE", ksa.Suite)
	}
	if err := c.WaitLog(ctx, "selected proposal: IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519"); err != nil {
		t.Error(err)
	}
	for _, l := range strings.Split(c.Log(), "\n") {
		if strings.Contains(l, "received proposals: IKE") {
			t.Logf("charon: %s", strings.TrimSpace(l))
		}
	}
	terminate(t, ctx, c, k, true)
}
