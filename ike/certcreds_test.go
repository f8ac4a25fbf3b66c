package ike

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/ike/pki"
	"github.com/keyplane/keyplane/internal/testpki"
	"github.com/keyplane/keyplane/kernelops"
)

// fakeCerts is a Credentials and CertCredentials test double: one
// certificate chain and one trust store (or errors), and every question
// asked.
type fakeCerts struct {
	fakeKeys
	chain    *CertChain
	trust    *pki.Store
	certErr  error
	trustErr error
	mu       sync.Mutex
	certQs   []string // "cert local remote", "trust local remote"
}

func (f *fakeCerts) ask(q string, ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certQs = append(f.certQs, q)
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("no deadline")
	}
	return nil
}

func (f *fakeCerts) LocalCert(ctx context.Context, local, remote config.Identity) (*CertChain, error) {
	if err := f.ask("cert "+local.String()+" "+remote.String(), ctx); err != nil {
		return nil, err
	}
	return f.chain, f.certErr
}

func (f *fakeCerts) TrustAnchors(ctx context.Context, local, remote config.Identity) (*pki.Store, error) {
	if err := f.ask("trust "+local.String()+" "+remote.String(), ctx); err != nil {
		return nil, err
	}
	return f.trust, f.trustErr
}

func (f *fakeCerts) questions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.certQs...)
}

// withoutCerts is an end's configuration stripped of its certificates,
// keys, CAs and CRLs (auth = pubkey on both sides stays).
func withoutCerts(cfg *config.Config) *config.Config {
	c := cfg.Connections[0]
	c.LocalCerts, c.Intermediates, c.CACerts, c.CRLs, c.Trust = nil, nil, nil, nil, nil
	return cfg
}

// certPair is a pkPair whose end b is known as b.example.org and
// requires a.example.org; b's CertCredentials answer what its files
// held.
func certPair(t *testing.T) (*pkPair, *fakeCerts) {
	p := newPKPair(t, "p256")
	p.a.localID, p.a.remoteID = "a.example.org", "b.example.org"
	p.b.localID, p.b.remoteID = "b.example.org", "a.example.org"
	trust, err := pki.NewStore([]*x509.Certificate{p.pa.Root.X509}, nil)
	require.NoError(t, err)
	return p, &fakeCerts{
		chain: &CertChain{Leaf: p.lfB.X509, Key: p.lfB.Key, Intermediates: []*x509.Certificate{p.pb.Inter.X509}},
		trust: trust,
	}
}

func (p *pkPair) certPeers(t *testing.T, bc Credentials) (*peer, *peer) {
	a := newPeer(t, "a", p.a.config(t, p.dir))
	b := newPeer(t, "b", withoutCerts(p.b.config(t, p.dir)), withEngineOptions(func(o *Options) { o.Credentials = bc }))
	return a, b
}

// TestCertCredentials: an end with auth = pubkey and neither certificates
// nor CAs in its configuration gets both from its CertCredentials, as
// responder (trust anchors asked with the identity the peer sent, then
// its certificate) and as initiator (with remote.id), each once per IKE
// SA; its chain (leaf and intermediate CA) verifies at the other end and
// the other end's at it. Reload accepts such a configuration too.
func TestCertCredentials(t *testing.T) {
	noLeaks(t)
	for _, initiator := range []string{"a", "b"} {
		t.Run(initiator+"-initiates", func(t *testing.T) {
			p, bc := certPair(t)
			a, b := p.certPeers(t, bc)
			x, y, child := a, b, "a-net"
			if initiator == "b" {
				x, y, child = b, a, "b-net"
			}
			establish(t, x, y, child)
			want := []string{"trust b.example.org a.example.org", "cert b.example.org a.example.org"}
			if initiator == "b" {
				want = []string{"cert b.example.org a.example.org", "trust b.example.org a.example.org"}
			}
			assert.Equal(t, want, bc.questions(), "each asked once for the IKE SA")
			for _, q := range []*peer{a, b} {
				assert.Contains(t, q.logText(), "peer's certificate and signature verified", q.name)
			}
			assert.Contains(t, a.logText(), `ca="C=CH, O=keyplane test, CN=B Root CA"`, "a verified b's chain from the credentials")
			assert.Contains(t, b.logText(), `ca="C=CH, O=keyplane test, CN=A Root CA"`, "b verified a's chain with the credentials' trust store")
			assert.Empty(t, bc.fakeKeys.questions(), "no pre-shared key asked")
			keysCrosswise(t, a, b)
			if initiator == "a" {
				// Only b's loop asks the credentials: the worker left the
				// two AUTH computations to it and made the child's keys.
				used, redone := authUse(t, b.e)
				assert.Equal(t, [2]int{1, 2}, [2]int{used, redone}, "IKE_AUTH values from the worker / computed again")
			}

			// A new IKE SA asks again, once each.
			require.NoError(t, x.e.Terminate(ctxT(t, 5*time.Second), x.name))
			waitFor(t, "both SAs gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
			establish(t, x, y, child)
			assert.Equal(t, append(want, want...), bc.questions())

			require.NoError(t, b.e.Reload(ctxT(t, 5*time.Second), withoutCerts(p.b.config(t, p.dir))))
		})
	}
}

// TestCertCredentialsFail: an error, a nil answer or a key not the
// certificate's fails the authentication: as responder the initiator
// gets AUTHENTICATION_FAILED and the responder's log says why; as
// initiator the initiate fails with ErrNoCert or ErrNoTrust. Each is
// asked once.
func TestCertCredentialsFail(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name    string
		spoil   func(p *pkPair, f *fakeCerts)
		kind    error
		wantLog string
	}{
		{"certificate lookup fails", func(_ *pkPair, f *fakeCerts) { f.chain, f.certErr = nil, errors.New("database down") },
			ErrNoCert, "no local certificate for b.example.org (connection b): credentials: database down"},
		{"no certificate", func(_ *pkPair, f *fakeCerts) { f.chain = nil },
			ErrNoCert, "credentials gave no certificate and key"},
		{"key of another certificate", func(p *pkPair, f *fakeCerts) { f.chain.Key = p.leafA.Key },
			ErrNoCert, "credentials gave a key that is not the certificate"},
		{"trust lookup fails", func(_ *pkPair, f *fakeCerts) { f.trust, f.trustErr = nil, errors.New("CA store locked") },
			ErrNoTrust, "no trust anchors for a.example.org (connection b): credentials: CA store locked"},
		{"no trust store", func(_ *pkPair, f *fakeCerts) { f.trust = nil },
			ErrNoTrust, "credentials gave no trust store"},
	} {
		t.Run(tc.name+"/b-responds", func(t *testing.T) {
			p, bc := certPair(t)
			tc.spoil(p, bc)
			a, b := p.certPeers(t, bc)
			err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
			wantNotify(t, err, message.AUTHENTICATION_FAILED, true)
			waitFor(t, "b's reason in its log", 3*time.Second, func() bool { return strings.Contains(b.logText(), tc.wantLog) })
			assert.Contains(t, b.logText(), "AUTHENTICATION_FAILED")
			assertAskedOnce(t, bc, tc.kind)
			a.expectEmpty(t)
			b.expectEmpty(t)
		})
		t.Run(tc.name+"/b-initiates", func(t *testing.T) {
			p, bc := certPair(t)
			tc.spoil(p, bc)
			a, b := p.certPeers(t, bc)
			err := b.e.Initiate(ctxT(t, 5*time.Second), "b-net")
			require.ErrorIs(t, err, tc.kind)
			assert.ErrorContains(t, err, tc.wantLog)
			waitFor(t, "b's reason in its log", 3*time.Second, func() bool { return strings.Contains(b.logText(), tc.wantLog) })
			assertAskedOnce(t, bc, tc.kind)
			a.expectEmpty(t)
			b.expectEmpty(t)
		})
	}

	t.Run("no CertCredentials", func(t *testing.T) {
		p, _ := certPair(t)
		for _, creds := range []Credentials{nil, &fakeKeys{}} {
			be, err := nokernel.Open(t.Context(), kernelops.Options{})
			require.NoError(t, err)
			t.Cleanup(func() { be.Close() })
			_, err = New(t.Context(), Options{Backend: be, Config: withoutCerts(p.b.config(t, p.dir)), Credentials: creds})
			var es config.Errors
			require.ErrorAs(t, err, &es, "credentials %T", creds)
			var fields []string
			for _, e := range es {
				fields = append(fields, e.Field)
			}
			assert.Equal(t, []string{"local.certs", "remote.cacerts"}, fields)
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
		}
	})
}

// assertAskedOnce checks the failing kind was asked exactly once (and
// the other at most once).
func assertAskedOnce(t *testing.T, f *fakeCerts, kind error) {
	t.Helper()
	n := map[string]int{}
	for _, q := range f.questions() {
		n[strings.Fields(q)[0]]++
	}
	failing, other := "cert", "trust"
	if kind == ErrNoTrust {
		failing, other = other, failing
	}
	assert.Equal(t, 1, n[failing], "asked %v", f.questions())
	assert.LessOrEqual(t, n[other], 1, "asked %v", f.questions())
}

// TestCertCredentialsTrustRefuses: the trust store from the credentials
// is applied as remote.cacerts' would be: a peer certificate of another
// CA, or one its store's CRL revokes, is refused (AUTHENTICATION_FAILED)
// in both roles, and the log says why.
func TestCertCredentialsTrustRefuses(t *testing.T) {
	noLeaks(t)
	other := testpki.New(t, "p256", "Other")
	for _, tc := range []struct {
		name  string
		store func(t *testing.T, p *pkPair) *pki.Store
		why   string
	}{
		{"another CA", func(t *testing.T, _ *pkPair) *pki.Store {
			st, err := pki.NewStore([]*x509.Certificate{other.Root.X509}, nil)
			require.NoError(t, err)
			return st
		}, "certificate not issued by a trusted CA"},
		{"revoked", func(t *testing.T, p *pkPair) *pki.Store {
			crl, err := x509.ParseRevocationList(testpki.CRL(t, p.pa.Inter, p.leafA.X509))
			require.NoError(t, err)
			st, err := pki.NewStore([]*x509.Certificate{p.pa.Root.X509}, []*x509.RevocationList{crl})
			require.NoError(t, err)
			return st
		}, "certificate revoked"},
	} {
		for _, initiator := range []string{"a", "b"} {
			t.Run(tc.name+"/"+initiator+"-initiates", func(t *testing.T) {
				p, bc := certPair(t)
				bc.trust = tc.store(t, p)
				a, b := p.certPeers(t, bc)
				if initiator == "a" {
					wantNotify(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-net"), message.AUTHENTICATION_FAILED, true)
				} else {
					wantNotify(t, b.e.Initiate(ctxT(t, 5*time.Second), "b-net"), message.AUTHENTICATION_FAILED, false)
				}
				waitFor(t, "b's reason in its log", 3*time.Second, func() bool { return strings.Contains(b.logText(), tc.why) })
				a.expectEmpty(t)
				b.expectEmpty(t)
			})
		}
	}
}
