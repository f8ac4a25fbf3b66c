package interop

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
	"github.com/keyplane/keyplane/internal/testpki"
)

// pkRig is the two PKIs of a certificate interop test: keyplane's (its
// certificate a.keyplane.test from an intermediate CA) and charon's
// (b.keyplane.test), each end trusting the other's root only, so each
// must send its intermediate.
type pkRig struct {
	dir          string
	kp, sw       *testpki.PKI
	kleaf, sleaf *testpki.Cert
}

func newPKRig(t *testing.T, kind string) *pkRig { return newPKRigT(t, kind) }

func newPKRigT(t *testing.T, kind string) *pkRig {
	t.Helper()
	caKind := kind
	if strings.HasPrefix(kind, "rsa") {
		caKind = "rsa2048"
	}
	r := &pkRig{dir: t.TempDir(), kp: testpki.New(t, caKind, "keyplane"), sw: testpki.New(t, caKind, "charon")}
	r.kleaf = r.kp.Leaf(t, kind, "a.keyplane.test")
	r.sleaf = r.sw.Leaf(t, kind, "b.keyplane.test")
	return r
}

// charon is charon's side of the rig.
func (r *pkRig) charon(t *testing.T) *swan.Pubkey {
	return &swan.Pubkey{Cert: testpki.CertPEM(r.sleaf.X509), Key: testpki.KeyPEM(t, r.sleaf.Key),
		OwnCAs:  [][]byte{testpki.CertPEM(r.sw.Inter.X509), testpki.CertPEM(r.sw.Root.X509)},
		CACerts: [][]byte{testpki.CertPEM(r.kp.Root.X509)}}
}

// keyplaneFiles writes keyplane's certificate chain, key and trusted CA.
func (r *pkRig) keyplaneFiles(t *testing.T) testpki.Files {
	return testpki.WriteEnd(t, r.dir, "kp", r.kp, r.kleaf, r.sw.Root)
}

// pubkeyConfig is keyplane's configuration with certificates, on
// backend (xfrm: in namespace A): daemonExtra and remoteExtra go into
// the daemon and remote sections.
func pubkeyConfig(t *testing.T, p *lab.Pair, s suite, f testpki.Files, backend, daemonExtra, remoteExtra string) *config.Config {
	t.Helper()
	params := ""
	if backend == "xfrm" {
		params = "params {\n\t\tnetns = /run/netns/" + p.A.Name + "\n\t}"
	}
	src := fmt.Sprintf(`
daemon {
	retransmit_timeout = 2s
	retransmit_tries = 4
	log_level = debug
	%s
}
backend {
	name = %s
	%s
}
secrets {
	private-kp {
		file = %s
	}
}
connections {
	peer {
		local_addrs = %s
		remote_addrs = %s
		proposals = %s
		local {
			auth = pubkey
			certs = %s
			id = a.keyplane.test
		}
		remote {
			auth = pubkey
			cacerts = %s
			id = b.keyplane.test
			%s
		}
		children {
			net {
				local_ts = %s/32
				remote_ts = %s/32
				esp_proposals = %s
			}
		}
	}
}
`, daemonExtra, backend, params, f.Key, p.A4, p.B4, s.ike, f.Certs, f.CA, remoteExtra, innerK, innerS, s.esp)
	cfg, err := config.Parse(filepath.Join(filepath.Dir(f.Key), "interop.conf"), []byte(src), config.Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	return cfg
}

// wantAuthFailed checks that err is AUTHENTICATION_FAILED, sent by the
// peer when fromPeer.
func wantAuthFailed(t *testing.T, err error, fromPeer bool) error {
	t.Helper()
	ne, ok := asNotify(err)
	if !ok || ne.Type != message.AUTHENTICATION_FAILED || ne.FromPeer != fromPeer {
		t.Fatalf("initiate: %v; want AUTHENTICATION_FAILED (from peer %v)", err, fromPeer)
	}
	return ne
}

func asNotify(err error) (*ike.NotifyError, bool) {
	var ne *ike.NotifyError
	ok := errors.As(err, &ne)
	return ne, ok
}

// pubkeySuite is the suite of the certificate tests.
var pubkeySuite = suite{ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16", encr: "AES_GCM_16", dh: "CURVE_25519"}
