package ike

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/internal/testpki"
	"github.com/keyplane/keyplane/kernelops"
)

// pkEnd is one end of a certificate-authenticated pair for tests.
type pkEnd struct {
	name                            string
	port, natPort                   uint16
	remotePort, remoteNATPort       uint16
	certs, key, cacerts, crls       string
	localID, remoteID               string // "": the defaults (subject DN, %any)
	revocation                      string
	proposals, esp, daemon, connExt string
	localTS, remoteTS               string
	extraKeys                       []string // more private key files
}

func (e pkEnd) config(t testing.TB, dir string) *config.Config {
	t.Helper()
	if e.proposals == "" {
		e.proposals = "aes128gcm16-prfsha256-x25519"
	}
	if e.esp == "" {
		e.esp = "aes128gcm16"
	}
	local := fmt.Sprintf("auth = pubkey\n\t\t\tcerts = %s\n", e.certs)
	if e.localID != "" {
		local += fmt.Sprintf("\t\t\tid = %q\n", e.localID)
	}
	remote := fmt.Sprintf("auth = pubkey\n\t\t\tcacerts = %s\n", e.cacerts)
	if e.remoteID != "" {
		remote += fmt.Sprintf("\t\t\tid = %q\n", e.remoteID)
	}
	if e.crls != "" {
		remote += fmt.Sprintf("\t\t\tcrls = %s\n", e.crls)
	}
	if e.revocation != "" {
		remote += fmt.Sprintf("\t\t\trevocation = %s\n", e.revocation)
	}
	extra := ""
	for i, k := range e.extraKeys {
		extra += fmt.Sprintf("private-%d {\n\t\tfile = %s\n\t}\n", i, k)
	}
	src := fmt.Sprintf(`
daemon {
	retransmit_timeout = 300ms
	retransmit_tries = 3
	retransmit_base = 1.5
	%s
}
secrets {
	private-%s {
		file = %s
	}
	%s
}
connections {
	%s {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = %s
		%s
		local {
			%s
		}
		remote {
			%s
		}
		children {
			%s-net {
				local_ts = %s
				remote_ts = %s
				esp_proposals = %s
			}
		}
	}
}
`, e.daemon, e.name, e.key, extra, e.name, e.port, e.natPort, e.remotePort, e.remoteNATPort, e.proposals, e.connExt,
		local, remote, e.name, e.localTS, e.remoteTS, e.esp)
	cfg, err := config.Parse(filepath.Join(dir, e.name+".conf"), []byte(src), config.Options{})
	if err != nil {
		t.Fatalf("config %s: %v\n%s", e.name, err, src)
	}
	return cfg
}

// pkPair makes two ends with their own PKIs of key kind (each trusts the
// other's root CA; certificates come from an intermediate CA and name
// a.example.org and b.example.org).
type pkPair struct {
	dir        string
	a, b       pkEnd
	pa, pb     *testpki.PKI
	leafA, lfB *testpki.Cert
}

func newPKPair(t testing.TB, kind string) *pkPair {
	t.Helper()
	caKind := kind
	if strings.HasPrefix(kind, "rsa") {
		caKind = "rsa2048" // the CAs' keys are not what is measured
	}
	p := &pkPair{dir: t.TempDir()}
	p.pa, p.pb = testpki.New(t, caKind, "A"), testpki.New(t, caKind, "B")
	p.leafA, p.lfB = p.pa.Leaf(t, kind, "a.example.org"), p.pb.Leaf(t, kind, "b.example.org")
	fa := testpki.WriteEnd(t, p.dir, "a", p.pa, p.leafA, p.pb.Root)
	fb := testpki.WriteEnd(t, p.dir, "b", p.pb, p.lfB, p.pa.Root)
	ports := freePorts(t, 4)
	p.a = pkEnd{name: "a", port: ports[0], natPort: ports[1], remotePort: ports[2], remoteNATPort: ports[3],
		certs: fa.Certs, key: fa.Key, cacerts: fa.CA, localTS: "10.1.0.0/16", remoteTS: "10.2.0.0/16"}
	p.b = pkEnd{name: "b", port: ports[2], natPort: ports[3], remotePort: ports[0], remoteNATPort: ports[1],
		certs: fb.Certs, key: fb.Key, cacerts: fb.CA, localTS: "10.2.0.0/16", remoteTS: "10.1.0.0/16"}
	return p
}

func (p *pkPair) peers(t *testing.T, opts ...peerOpt) (*peer, *peer) {
	t.Helper()
	return newPeer(t, "a", p.a.config(t, p.dir), opts...), newPeer(t, "b", p.b.config(t, p.dir))
}

// keysCrosswise checks that every SA of a's dataplane is in b's with the
// same keys (what one end sends with, the other receives with).
func keysCrosswise(t *testing.T, a, b *peer) {
	t.Helper()
	theirs := map[uint32]kernelops.SA{} // (the dump reuses its entry: copies)
	for e, err := range b.b.SAs(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		sa := e.SA
		sa.Encryption.Key = bytes.Clone(sa.Encryption.Key)
		sa.Integrity.Key = bytes.Clone(sa.Integrity.Key)
		theirs[sa.ID.SPI] = sa
	}
	n := 0
	for e, err := range a.b.SAs(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		o, ok := theirs[e.SA.ID.SPI]
		if !ok || len(o.Encryption.Key) == 0 || !bytes.Equal(o.Encryption.Key, e.SA.Encryption.Key) || !bytes.Equal(o.Integrity.Key, e.SA.Integrity.Key) {
			t.Errorf("SA %08x: the keys differ between a and b (or b lacks it)", e.SA.ID.SPI)
		}
		n++
	}
	if n == 0 {
		t.Error("no SAs to compare")
	}
}

// TestPubkeyAuth: keyplane to keyplane with certificates from an
// intermediate CA (each end trusts only the other's root, so the
// intermediate must travel in a CERT payload), for RSA (RSASSA-PSS),
// ECDSA P-256 and Ed25519, each end initiating; identities by subject DN
// (the default) and by subjectAltName DNS.
func TestPubkeyAuth(t *testing.T) {
	noLeaks(t)
	for _, c := range []struct {
		kind, scheme string
	}{
		{"rsa3072", "RSASSA-PSS with SHA-256"},
		{"p256", "ecdsa-with-SHA256"},
		{"ed25519", "Ed25519"},
	} {
		p := newPKPair(t, c.kind)
		for _, initiator := range []string{"a", "b"} {
			t.Run(c.kind+"/"+initiator+"-initiates", func(t *testing.T) {
				p := *p
				ports := freePorts(t, 4)
				p.a.port, p.a.natPort, p.a.remotePort, p.a.remoteNATPort = ports[0], ports[1], ports[2], ports[3]
				p.b.port, p.b.natPort, p.b.remotePort, p.b.remoteNATPort = ports[2], ports[3], ports[0], ports[1]
				// a is known by its DN, b by its DNS name; each end
				// requires the other's by a wildcard pattern.
				p.a.remoteID = "*.example.org"
				p.b.localID = "b.example.org"
				p.b.remoteID = "C=CH, O=keyplane test, CN=*"
				a, b := p.peers(t)
				x, y := a, b
				if initiator == "b" {
					x, y = b, a
				}
				establish(t, x, y, initiator+"-net")
				ia, ib := a.sas(t)[0], b.sas(t)[0]
				if ia.State != "established" || ib.State != "established" || ia.SPIi != ib.SPIi {
					t.Fatalf("IKE SAs: %+v / %+v", ia, ib)
				}
				for _, q := range []*peer{a, b} {
					if !strings.Contains(q.logText(), "scheme=\""+c.scheme+"\"") && !strings.Contains(q.logText(), "scheme="+c.scheme) {
						t.Errorf("%s's log does not name the scheme %s", q.name, c.scheme)
					}
					if !strings.Contains(q.logText(), "peer's certificate and signature verified") {
						t.Errorf("%s did not verify a certificate", q.name)
					}
				}
				if !strings.Contains(b.logText(), "authenticated C=CH, O=keyplane test, CN=a.example.org") ||
					!strings.Contains(a.logText(), "authenticated b.example.org") {
					t.Error("the identities are not the DN and the DNS name")
				}
				keysCrosswise(t, a, b)
				// The responder took the worker's signature check, its
				// own signature and the child's keys (auth_offload.go).
				used, redone := authUse(t, y.e)
				if used != 3 || redone != 0 {
					t.Errorf("%s: IKE_AUTH values from the worker %d, computed again %d; want 3, 0", y.name, used, redone)
				}
				// The initiator: the responder's signature check and the
				// child's keys.
				if used, redone := authUse(t, x.e); used != 2 || redone != 0 {
					t.Errorf("%s: IKE_AUTH values from the worker %d, computed again %d; want 2, 0", x.name, used, redone)
				}
			})
		}
	}
}

// TestPubkeyRefused: a peer whose certificate is issued by a CA we do not
// trust, is expired, or is on its issuer's CRL, and one whose identity is
// not in its certificate, is refused with AUTHENTICATION_FAILED, and the
// refusing end's log says why; in both roles (the responder refuses the
// initiator, and the initiator the responder).
func TestPubkeyRefused(t *testing.T) {
	noLeaks(t)
	base := newPKPair(t, "p256")
	other := testpki.New(t, "p256", "Other")
	for _, c := range []struct {
		name string
		// spoil makes the certificate of end victim unacceptable to the
		// other end.
		spoil func(t *testing.T, p *pkPair, victim string)
		why   string
	}{
		{"wrong CA", func(t *testing.T, p *pkPair, victim string) {
			f := testpki.Write(t, p.dir, victim+"-other-ca.pem", testpki.CertPEM(other.Root.X509))
			if victim == "a" {
				p.b.cacerts = f
			} else {
				p.a.cacerts = f
			}
		}, "certificate not issued by a trusted CA"},
		{"expired", func(t *testing.T, p *pkPair, victim string) {
			pk, name := p.pa, "a.example.org"
			if victim == "b" {
				pk, name = p.pb, "b.example.org"
			}
			old := testpki.Issue(t, testpki.Spec{CN: name, Kind: "p256", DNS: []string{name},
				NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, pk.Inter)
			certs := testpki.Write(t, p.dir, victim+"-expired.pem", testpki.CertPEM(old.X509, pk.Inter.X509))
			key := testpki.Write(t, p.dir, victim+"-expired.key", testpki.KeyPEM(t, old.Key))
			if victim == "a" {
				p.a.certs, p.a.key = certs, key
			} else {
				p.b.certs, p.b.key = certs, key
			}
		}, "certificate outside its validity period"},
		{"revoked", func(t *testing.T, p *pkPair, victim string) {
			if victim == "a" {
				p.b.crls = testpki.Write(t, p.dir, "a-inter.crl", testpki.CRLPEM(testpki.CRL(t, p.pa.Inter, p.leafA.X509)))
			} else {
				p.a.crls = testpki.Write(t, p.dir, "b-inter.crl", testpki.CRLPEM(testpki.CRL(t, p.pb.Inter, p.lfB.X509)))
			}
		}, "certificate revoked"},
		{"identity not in the certificate", func(t *testing.T, p *pkPair, victim string) {
			if victim == "a" {
				p.a.localID = "c.example.org"
			} else {
				p.b.localID = "c.example.org"
			}
		}, "peer identity c.example.org is not in its certificate"},
	} {
		for _, victim := range []string{"a", "b"} {
			// a initiates: b refuses a as responder, a refuses b as
			// initiator.
			t.Run(c.name+"/"+victim+"-refused", func(t *testing.T) {
				p := *base
				p.dir = t.TempDir()
				ports := freePorts(t, 4)
				p.a.port, p.a.natPort, p.a.remotePort, p.a.remoteNATPort = ports[0], ports[1], ports[2], ports[3]
				p.b.port, p.b.natPort, p.b.remotePort, p.b.remoteNATPort = ports[2], ports[3], ports[0], ports[1]
				c.spoil(t, &p, victim)
				a, b := p.peers(t)
				err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
				refuser := b
				if victim == "b" {
					refuser = a
				}
				wantNotify(t, err, message.AUTHENTICATION_FAILED, victim == "a")
				waitFor(t, refuser.name+"'s log to say why", 2*time.Second, func() bool {
					return strings.Contains(refuser.logText(), c.why)
				})
				if victim == "b" {
					// The responder hears of it in an INFORMATIONAL.
					waitFor(t, "b to drop its SA", 3*time.Second, func() bool { return len(b.sas(t)) == 0 })
				}
				a.expectEmpty(t)
				b.expectEmpty(t)
			})
		}
	}
}

// TestPubkeyCertReq: the responder's CERTREQ names the CA it trusts, and
// the initiator picks, of its two certificates, the one that chains to
// it.
func TestPubkeyCertReq(t *testing.T) {
	noLeaks(t)
	p := newPKPair(t, "p256")
	// a also holds a certificate of another PKI, listed first; its
	// certs file holds both chains up to their roots, which is how a
	// CERTREQ (naming roots) picks one.
	other := testpki.New(t, "p256", "Other")
	lo := other.Leaf(t, "p256", "a.example.org")
	p.a.certs = testpki.Write(t, p.dir, "a-two.pem", testpki.CertPEM(lo.X509, other.Inter.X509, other.Root.X509,
		p.leafA.X509, p.pa.Inter.X509, p.pa.Root.X509))
	p.a.extraKeys = []string{testpki.Write(t, p.dir, "a-other.key", testpki.KeyPEM(t, lo.Key))}
	a := newPeer(t, "a", p.a.config(t, p.dir))
	b := newPeer(t, "b", p.b.config(t, p.dir))
	if n := len(a.e.cfg.Connections[0].LocalCerts); n != 2 {
		t.Fatalf("a has %d certificates with keys, want 2", n)
	}
	establish(t, a, b, "a-net")
	if !strings.Contains(a.logText(), "subject=\"C=CH, O=keyplane test, CN=a.example.org\"") ||
		!strings.Contains(b.logText(), "ca=\"C=CH, O=keyplane test, CN=A Root CA\"") {
		t.Errorf("a did not authenticate with the certificate b's CERTREQ asks for")
	}
}
