package config

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keyplane/keyplane/ike/pki"
)

// Public key authentication settings (swanctl's names): local.auth =
// pubkey with local.certs, remote.auth = pubkey with remote.cacerts,
// remote.crls and remote.revocation; private keys in the top-level
// secrets section, as swanctl's secrets.private<suffix>.

// Auth is an end's authentication method (local.auth, remote.auth).
type Auth uint8

const (
	AuthPSK    Auth = iota // pre-shared key (psk_file, psk_env)
	AuthPubkey             // certificates and signatures (RFC 7427)
)

func (a Auth) String() string {
	if a == AuthPubkey {
		return "pubkey"
	}
	return "psk"
}

// MarshalText writes the method's name.
func (a Auth) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Cert is a certificate and the file it came from.
type Cert struct {
	X509 *x509.Certificate `json:"-"`
	File string
}

// LocalCert is one of local.certs with its private key: a candidate for
// this end's authentication.
type LocalCert struct {
	Cert
	Key     crypto.Signer `json:"-"`
	KeyFile string
}

// CRL is a certificate revocation list and the file it came from.
type CRL struct {
	X509 *x509.RevocationList `json:"-"`
	File string
}

// Fragmentation is swanctl's fragmentation setting (RFC 7383 for IKEv2).
type Fragmentation uint8

const (
	// FragYes (the default) announces support and fragments messages
	// larger than fragment_size when the peer supports it too.
	FragYes Fragmentation = iota
	// FragAccept announces support and reassembles the peer's
	// fragments, but never fragments its own messages.
	FragAccept
	// FragForce is swanctl's IKEv1-only "force": for IKEv2 it is yes.
	FragForce
	// FragNo neither announces nor accepts fragments.
	FragNo
)

func (f Fragmentation) String() string {
	return [...]string{"yes", "accept", "force", "no"}[f]
}

// MarshalText writes the setting's value.
func (f Fragmentation) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// Announce reports whether IKEV2_FRAGMENTATION_SUPPORTED is sent.
func (f Fragmentation) Announce() bool { return f != FragNo }

// Sends reports whether this end fragments its own large messages.
func (f Fragmentation) Sends() bool { return f == FragYes || f == FragForce }

// DefaultFragmentSize is fragment_size's default (strongSwan's
// charon.fragment_size): the largest IP datagram of an IKE fragment.
const DefaultFragmentSize = 1280

// Caps on what is read from certificate and CRL files: far above any
// real one, far below what could hurt the daemon.
const (
	MaxCertFileSize = 1 << 20
	MaxCRLFileSize  = 16 << 20
)

// key is a private key of the secrets section.
type key struct {
	name, file string
	signer     crypto.Signer
}

// readPublic reads a certificate or CRL file: at most max bytes, a
// regular file (no mode check: nothing secret in it).
func readPublic(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return data, nil
}

// secretsSection reads the top-level secrets section: private<suffix>
// (also rsa, ecdsa, pkcs8<suffix>, swanctl's other names) { file = PATH }.
func (b *builder) secretsSection(s *section) {
	for _, kv := range s.settings {
		b.fail(kv.line, "secrets."+kv.key, "secrets holds sections (private-NAME { file = PATH })")
	}
	for _, sub := range s.sections {
		field := "secrets." + sub.name
		if !slices.ContainsFunc([]string{"private", "rsa", "ecdsa", "pkcs8"}, func(p string) bool { return strings.HasPrefix(sub.name, p) }) {
			b.fail(sub.line, field, "unknown secret type (private<suffix>, rsa<suffix>, ecdsa<suffix> or pkcs8<suffix>; pre-shared keys are psk_file/psk_env)")
			continue
		}
		b.known(sub, []string{"file", "secret"}, nil)
		if kv, ok := sub.get("secret"); ok {
			b.fail(kv.line, field+".secret", "encrypted private keys are not supported: store the key unencrypted, mode 0600")
			continue
		}
		kv, ok := sub.get("file")
		if !ok || kv.value == "" {
			b.fail(sub.line, field+".file", "no key file")
			continue
		}
		data, err := b.o.ReadFile(kv.value)
		if err != nil {
			b.fail(kv.line, field+".file", "%v", err).Err = err
			continue
		}
		signer, err := pki.ParsePrivateKey(data)
		clear(data)
		if err != nil {
			b.fail(kv.line, field+".file", "%s: %v", kv.value, err).Err = err
			continue
		}
		b.keys = append(b.keys, key{name: sub.name, file: kv.value, signer: signer})
	}
}

// readCerts loads the certificates of a comma-separated file list; nil
// after an error (reported).
func (b *builder) readCerts(kv setting, field string) []Cert {
	var out []Cert
	for _, f := range splitList(kv.value) {
		data, err := b.o.ReadPublic(f, MaxCertFileSize)
		if err != nil {
			b.fail(kv.line, field, "%v", err).Err = err
			return nil
		}
		cs, err := pki.ParseCertificates(data)
		if err != nil {
			b.fail(kv.line, field, "%s: %v", f, err).Err = err
			return nil
		}
		for _, c := range cs {
			out = append(out, Cert{X509: c, File: f})
		}
	}
	if len(out) == 0 {
		b.fail(kv.line, field, "no certificate files")
		return nil
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// localPubkey settles local.certs: each certificate whose key is in the
// secrets section is a candidate for authentication; the others are
// intermediates sent along (CERT payloads) when they issue one.
func (b *builder) localPubkey(e *section, c *Connection) {
	kv, ok := e.get("certs")
	if !ok {
		b.fail(e.line, "local.certs", wantLocalCerts)
		return
	}
	certs := b.readCerts(kv, "local.certs")
	if certs == nil {
		return
	}
	for _, cert := range certs {
		var k *key
		for i := range b.keys {
			if pki.KeyMatches(cert.X509, b.keys[i].signer) {
				k = &b.keys[i]
				break
			}
		}
		if k == nil {
			c.Intermediates = append(c.Intermediates, cert)
			continue
		}
		c.LocalCerts = append(c.LocalCerts, LocalCert{Cert: cert, Key: k.signer, KeyFile: k.file})
	}
	if len(c.LocalCerts) == 0 {
		b.fail(kv.line, "local.certs", "no private key in the secrets section belongs to a certificate of %s", kv.value)
	}
}

// remotePubkey settles remote.cacerts, remote.crls and remote.revocation
// into the connection's trust store.
func (b *builder) remotePubkey(e *section, c *Connection) {
	kv, ok := e.get("cacerts")
	if !ok {
		b.fail(e.line, "remote.cacerts", wantCACerts)
		return
	}
	if c.CACerts = b.readCerts(kv, "remote.cacerts"); c.CACerts == nil {
		return
	}
	defer func() {
		if c.Trust == nil {
			// An error about the CRLs or the policy was reported; the
			// trust store Validate would miss is part of it.
			b.failed[fieldKey{b.conn, "", "remote.cacerts"}] = true
		}
	}()
	if kv, ok := e.get("crls"); ok {
		for _, f := range splitList(kv.value) {
			data, err := b.o.ReadPublic(f, MaxCRLFileSize)
			if err != nil {
				b.fail(kv.line, "remote.crls", "%v", err).Err = err
				return
			}
			crl, err := pki.ParseCRL(data)
			if err != nil {
				b.fail(kv.line, "remote.crls", "%s: %v", f, err).Err = err
				return
			}
			c.CRLs = append(c.CRLs, CRL{X509: crl, File: f})
		}
	}
	if kv, ok := e.get("revocation"); ok {
		switch kv.value {
		case "relaxed":
			c.Revocation = pki.RevocationRelaxed
		case "ifuri":
			c.Revocation = pki.RevocationIfURI
		case "strict":
			c.Revocation = pki.RevocationStrict
		default:
			b.fail(kv.line, "remote.revocation", "%q: want strict, ifuri or relaxed", kv.value)
			return
		}
	}
	cas := make([]*x509.Certificate, len(c.CACerts))
	for i, x := range c.CACerts {
		cas[i] = x.X509
	}
	crls := make([]*x509.RevocationList, len(c.CRLs))
	for i, x := range c.CRLs {
		crls[i] = x.X509
	}
	st, err := pki.NewStore(cas, crls)
	if err != nil {
		b.fail(kv.line, "remote.cacerts", "%v", err).Err = err
		return
	}
	c.Trust = st
}

// defaultReadPublic reads certificate and CRL files relative to dir.
func defaultReadPublic(dir string) func(string, int64) ([]byte, error) {
	return func(p string, max int64) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return readPublic(p, max)
	}
}

// MinFragmentSize is the smallest fragment_size accepted: an IPv4
// datagram every host must take (RFC 791), which still leaves room for an
// IKE fragment's headers.
const MinFragmentSize = 576
