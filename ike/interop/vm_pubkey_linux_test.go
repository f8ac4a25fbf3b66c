package interop

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
	"github.com/keyplane/keyplane/internal/testpki"
)

// vmPubkeyRig is vmRig with certificates: charon authenticates with pk,
// under extra strongswan.conf settings.
func vmPubkeyRig(t *testing.T, s suite, pk *swan.Pubkey, settings map[string]string) (*lab.Pair, *swan.Charon) {
	t.Helper()
	p := lab.NewPair(t)
	p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
	p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
	p.A.Exec(t, innerRoute(p)...)
	conn := charonConn(p, s)
	conn.PSK, conn.Pubkey = "", pk
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{conn}, Settings: settings})
	return p, c
}

// upAndPing initiates from one end, waits for both, pings both ways
// through the kernel SAs and returns charon's view.
func upAndPing(t *testing.T, ctx context.Context, p *lab.Pair, c *swan.Charon, k *keyplane, charonStarts bool) swan.IKESA {
	t.Helper()
	if charonStarts {
		if err := c.Initiate(ctx, "kp"); err != nil {
			t.Fatalf("charon initiate: %v", err)
		}
	} else if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
		t.Fatalf("keyplane initiate: %v", err)
	}
	ksa, kch := k.waitChild(t, ctx)
	csa, err := c.WaitIKE(ctx, "kp", "ESTABLISHED")
	if err != nil {
		t.Fatal(err)
	}
	checkCrosswise(t, ksa, kch, csa, pubkeySuite)
	before := xfrmBytes(t, p.A)
	ping(t, p.A, innerK.String(), innerS.String(), 2)
	ping(t, p.B, innerS.String(), innerK.String(), 2)
	after := xfrmBytes(t, p.A)
	for _, spi := range []string{kch.SPIIn, kch.SPIOut} {
		if b, a := before[spiKey(spi)], after[spiKey(spi)]; a[1] < b[1]+4 {
			t.Errorf("keyplane SA %s: packets %d -> %d, want 4 more (2 pings each way)", spi, b[1], a[1])
		}
	}
	return csa
}

func roleName(charonStarts bool) string {
	if charonStarts {
		return "charon-initiates"
	}
	return "keyplane-initiates"
}

// TestVMPubkey: certificate authentication between keyplane on XFRM and
// charon on kernel-netlink with real ESP, for RSA-3072 (RSASSA-PSS both
// ways: charon with rsa_pss = yes) and ECDSA P-256, each end initiating,
// Ed25519 (charon initiating) and ECDSA with the classic method 9: each
// end's certificate comes from an intermediate CA that the other end
// only knows from the CERT payload, each end logs the scheme it
// verified, and ping passes both ways.
func TestVMPubkey(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	both := []bool{false, true}
	for _, c := range []struct {
		name, kind, scheme, charonScheme string
		settings                         map[string]string
		roles                            []bool // charon starts
	}{
		{"rsa3072", "rsa3072", "RSASSA-PSS with SHA-256", "RSA_EMSA_PSS", map[string]string{"rsa_pss": "yes"}, both},
		{"p256", "p256", "ecdsa-with-SHA256", "ECDSA", nil, both},
		{"ed25519", "ed25519", "Ed25519", "ED25519", nil, both[1:]},
		// charon without RFC 7427 (signature_authentication = no) sends
		// no SIGNATURE_HASH_ALGORITHMS: both ends use the classic method 9
		// (ECDSA P-256; TestHostPubkey has method 1, RSA).
		{"p256-classic", "p256", "ECDSA_SHA256_P256", "ECDSA", map[string]string{"signature_authentication": "no"}, both[:1]},
	} {
		r := newPKRig(t, c.kind)
		for _, charonStarts := range c.roles {
			t.Run(c.name+"/"+roleName(charonStarts), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), scale(45*time.Second))
				defer cancel()
				p, ch := vmPubkeyRig(t, pubkeySuite, r.charon(t), c.settings)
				k := startXfrmKeyplane(t, pubkeyConfig(t, p, pubkeySuite, r.keyplaneFiles(t), "xfrm", "", ""))
				upAndPing(t, ctx, p, ch, k, charonStarts)
				if !strings.Contains(k.log.String(), "scheme=\""+c.scheme+"\"") && !strings.Contains(k.log.String(), "scheme="+c.scheme) {
					t.Errorf("keyplane's log does not name %s", c.scheme)
				}
				if err := ch.WaitLog(ctx, "authentication of 'a.keyplane.test' with "+c.charonScheme); err != nil {
					t.Error(err)
				}
				if m := regexp.MustCompile(`authentication of 'a.keyplane.test' with [^\n]*`).FindString(ch.Log()); m != "" {
					t.Logf("charon: %s", m)
				}
				terminate(t, ctx, ch, k, !charonStarts)
				waitKernelsEmpty(t, p)
			})
		}
	}
}

// TestVMPubkeyRefused: a certificate from a CA the other end does not
// trust, an expired one and one on its issuer's CRL are refused with
// AUTHENTICATION_FAILED, both when keyplane refuses charon's (keyplane's
// log says why) and when charon refuses keyplane's (charon's log says
// why). keyplane initiates; nothing stays in either kernel.
func TestVMPubkeyRefused(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	r := newPKRig(t, "p256")
	other := testpki.New(t, "p256", "other")
	expired := func(pk *testpki.PKI, name string) *testpki.Cert {
		return testpki.Issue(t, testpki.Spec{CN: name, Kind: "p256", DNS: []string{name},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, pk.Inter)
	}
	for _, c := range []struct {
		name string
		// setup returns charon's credentials and keyplane's files and
		// remote section extras.
		setup         func(t *testing.T) (*swan.Pubkey, testpki.Files, string)
		keyplaneSays  string // keyplane refuses charon, saying this
		charonSays    string // charon refuses keyplane, saying this
		charonRefuses bool
	}{
		{name: "keyplane refuses charon's CA", setup: func(t *testing.T) (*swan.Pubkey, testpki.Files, string) {
			f := r.keyplaneFiles(t)
			f.CA = testpki.Write(t, r.dir, "other-ca.pem", testpki.CertPEM(other.Root.X509))
			return r.charon(t), f, ""
		}, keyplaneSays: "certificate not issued by a trusted CA"},
		{name: "keyplane refuses charon's expired certificate", setup: func(t *testing.T) (*swan.Pubkey, testpki.Files, string) {
			pk := r.charon(t)
			old := expired(r.sw, "b.keyplane.test")
			pk.Cert, pk.Key = testpki.CertPEM(old.X509), testpki.KeyPEM(t, old.Key)
			return pk, r.keyplaneFiles(t), ""
		}, keyplaneSays: "certificate outside its validity period"},
		{name: "keyplane refuses charon's revoked certificate", setup: func(t *testing.T) (*swan.Pubkey, testpki.Files, string) {
			crl := testpki.Write(t, r.dir, "sw-inter.crl", testpki.CRLPEM(testpki.CRL(t, r.sw.Inter, r.sleaf.X509)))
			return r.charon(t), r.keyplaneFiles(t), "crls = " + crl
		}, keyplaneSays: "certificate revoked"},
		{name: "charon refuses keyplane's CA", setup: func(t *testing.T) (*swan.Pubkey, testpki.Files, string) {
			pk := r.charon(t)
			pk.CACerts = [][]byte{testpki.CertPEM(other.Root.X509)}
			return pk, r.keyplaneFiles(t), ""
		}, charonRefuses: true, charonSays: "no issuer certificate found"},
		{name: "charon refuses keyplane's expired certificate", setup: func(t *testing.T) (*swan.Pubkey, testpki.Files, string) {
			old := expired(r.kp, "a.keyplane.test")
			f := r.keyplaneFiles(t)
			f.Certs = testpki.Write(t, r.dir, "kp-old.pem", testpki.CertPEM(old.X509, r.kp.Inter.X509))
			f.Key = testpki.Write(t, r.dir, "kp-old.key", testpki.KeyPEM(t, old.Key))
			return r.charon(t), f, ""
		}, charonRefuses: true, charonSays: "invalid (valid from"},
		{name: "charon refuses keyplane's revoked certificate", setup: func(t *testing.T) (*swan.Pubkey, testpki.Files, string) {
			pk := r.charon(t)
			pk.CRLs = [][]byte{testpki.CRLPEM(testpki.CRL(t, r.kp.Inter, r.kleaf.X509))}
			pk.Revocation = "strict"
			return pk, r.keyplaneFiles(t), ""
		}, charonRefuses: true, charonSays: "was revoked on"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(45*time.Second))
			defer cancel()
			pk, f, remoteExtra := c.setup(t)
			p, ch := vmPubkeyRig(t, pubkeySuite, pk, nil)
			k := startXfrmKeyplane(t, pubkeyConfig(t, p, pubkeySuite, f, "xfrm", "", remoteExtra))
			err := k.e.Initiate(ctx, "net")
			ne := wantAuthFailed(t, err, c.charonRefuses)
			t.Logf("keyplane: %v", ne)
			if c.charonRefuses {
				if err := ch.WaitLog(ctx, c.charonSays); err != nil {
					t.Error(err)
				}
				for _, l := range strings.Split(ch.Log(), "\n") {
					if strings.Contains(l, c.charonSays) {
						t.Logf("charon: %s", strings.TrimSpace(l))
					}
				}
			} else {
				if !strings.Contains(k.log.String(), c.keyplaneSays) {
					t.Errorf("keyplane's log does not say %q", c.keyplaneSays)
				}
				if err := ch.WaitLog(ctx, "AUTH_FAILED"); err != nil {
					t.Errorf("charon did not hear of the refusal: %v", err)
				}
			}
			k.waitNoSAs(t, ctx)
			if err := ch.WaitGone(ctx, "kp"); err != nil {
				t.Error(err)
			}
			waitKernelsEmpty(t, p)
		})
	}
}

// ipFrags reads the IPv4 fragmentation counters of a namespace
// (/proc/net/snmp): fragments created and datagrams reassembled.
func ipFrags(t *testing.T, ns *lab.NS) (created, reassembled int) {
	out := ns.Exec(t, "cat", "/proc/net/snmp")
	var head []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if i < len(f) {
				v, _ := strconv.Atoi(f[i])
				switch h {
				case "FragCreates":
					created = v
				case "ReasmOKs":
					reassembled = v
				}
			}
		}
	}
	return created, reassembled
}

// TestVMFragmentation: the path's MTU is lowered to 1000 (both veth
// ends), fragment_size is 1000 on both ends, and RSA-3072 certificate
// chains make IKE_AUTH larger than that: keyplane and charon send it in
// IKE fragments (RFC 7383) and reassemble each other's, in both roles;
// neither namespace fragments or reassembles an IP datagram meanwhile,
// and ping passes through the tunnel.
func TestVMFragmentation(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	r := newPKRig(t, "rsa3072")
	for _, charonStarts := range []bool{false, true} {
		t.Run(roleName(charonStarts), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(45*time.Second))
			defer cancel()
			pk := r.charon(t)
			p, ch := vmPubkeyRig(t, pubkeySuite, pk, map[string]string{"fragment_size": "1000", "rsa_pss": "yes"})
			p.A.Exec(t, "ip", "link", "set", "dev", p.IfA, "mtu", "1000")
			p.B.Exec(t, "ip", "link", "set", "dev", p.IfB, "mtu", "1000")
			k := startXfrmKeyplane(t, pubkeyConfig(t, p, pubkeySuite, r.keyplaneFiles(t), "xfrm", "fragment_size = 1000", ""))
			ca, ra := ipFrags(t, p.A)
			cb, rb := ipFrags(t, p.B)
			upAndPing(t, ctx, p, ch, k, charonStarts)
			for _, want := range []string{"sending in fragments", "reassembled"} {
				if !strings.Contains(k.log.String(), want) {
					t.Errorf("keyplane's log lacks %q", want)
				}
			}
			for _, want := range []string{"into", "reassembled fragmented IKE message"} {
				if err := ch.WaitLog(ctx, want); err != nil {
					t.Error(err)
				}
			}
			for _, l := range strings.Split(ch.Log(), "\n") {
				if strings.Contains(l, "fragment") && strings.Contains(l, "IKE message") {
					t.Logf("charon: %s", strings.TrimSpace(l))
				}
			}
			ca2, ra2 := ipFrags(t, p.A)
			cb2, rb2 := ipFrags(t, p.B)
			if ca2 != ca || ra2 != ra || cb2 != cb || rb2 != rb {
				t.Errorf("IP fragmentation happened: keyplane's namespace created %d, reassembled %d; charon's %d, %d",
					ca2-ca, ra2-ra, cb2-cb, rb2-rb)
			}
			terminate(t, ctx, ch, k, !charonStarts)
			waitKernelsEmpty(t, p)
		})
	}
}

// TestVMIntermediateFallback: charon 5.9.8 predates IKE_INTERMEDIATE and
// ML-KEM (strongSwan 6.0 added them), so it is a real peer without RFC
// 9242/9370: keyplane offering a hybrid proposal (x25519 + ML-KEM-768)
// and a classic one gets the classic suite, and the tunnel works.
func TestVMIntermediateFallback(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(45*time.Second))
	defer cancel()
	s := suite{ike: "aes256gcm16-prfsha384-x25519", esp: "aes128gcm16", encr: "AES_GCM_16", dh: "CURVE_25519"}
	p, c, cfg := vmRig(t, s)
	ps, err := config.ParseProposals("aes256gcm16-prfsha384-x25519-ke1_mlkem768, aes256gcm16-prfsha384-x25519", true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Connection("peer").Proposals = ps
	k := startXfrmKeyplane(t, cfg)
	if err := k.e.Initiate(ctx, "net"); err != nil {
		diagnose(t, p)
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
	t.Logf("keyplane suite %s; charon %v", ksa.Suite, csa)
	ping(t, p.A, innerK.String(), innerS.String(), 2)
	ping(t, p.B, innerS.String(), innerK.String(), 2)
	terminate(t, ctx, c, k, true)
	waitKernelsEmpty(t, p)
}
