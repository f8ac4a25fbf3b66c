package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/ike/pki"
	"github.com/keyplane/keyplane/internal/secretfile"
	"github.com/keyplane/keyplane/internal/testpki"
)

// pubkeyDir writes a PKI for the configuration tests: gw.pem (the
// certificate and its intermediate), gw.key, other.key (a key of no
// certificate there), ca.pem (the peer's root), peer.crl.
func pubkeyDir(t *testing.T) (string, *testpki.PKI, *testpki.Cert) {
	t.Helper()
	dir := t.TempDir()
	own, peer := testpki.New(t, "p256", "Own"), testpki.New(t, "p256", "Peer")
	gw := own.Leaf(t, "p256", "gw.example.org")
	testpki.Write(t, dir, "gw.pem", testpki.CertPEM(gw.X509, own.Inter.X509))
	testpki.Write(t, dir, "gw.key", testpki.KeyPEM(t, gw.Key))
	testpki.Write(t, dir, "other.key", testpki.KeyPEM(t, testpki.NewKey(t, "ed25519")))
	testpki.Write(t, dir, "ca.pem", testpki.CertPEM(peer.Root.X509))
	testpki.Write(t, dir, "peer.crl", testpki.CRLPEM(testpki.CRL(t, peer.Inter)))
	return dir, peer, gw
}

func pubkeyConf(secrets, local, remote, extra string) string {
	return fmt.Sprintf(`secrets {
%s
}
connections {
	c1 {
		local_addrs = 192.0.2.1
		remote_addrs = 192.0.2.2
		%s
		local {
%s
		}
		remote {
%s
		}
		children {
			ch1 {
			}
		}
	}
}
`, secrets, extra, local, remote)
}

const (
	gwKey     = "\tprivate-gw {\n\t\tfile = gw.key\n\t}"
	pkLocal   = "\t\t\tauth = pubkey\n\t\t\tcerts = gw.pem"
	pkRemote  = "\t\t\tauth = pubkey\n\t\t\tcacerts = ca.pem"
	pubkeyCRL = "\t\t\tcrls = peer.crl\n\t\t\trevocation = strict"
)

// TestPubkeyConfig: certificates, their keys from the secrets section, the
// CAs, CRLs and revocation policy become the connection's credentials;
// the default local id is the certificate's subject DN; no PSK is needed.
func TestPubkeyConfig(t *testing.T) {
	dir, peer, gw := pubkeyDir(t)
	cfg, err := Parse(filepath.Join(dir, "kp.conf"), []byte(pubkeyConf(gwKey, pkLocal, pkRemote+"\n"+pubkeyCRL+"\n\t\t\tid = \"C=CH, O=keyplane test, CN=*\"",
		"fragmentation = accept")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections[0]
	if c.LocalAuth != AuthPubkey || c.RemoteAuth != AuthPubkey || c.PSK != nil {
		t.Errorf("auth %v/%v psk %v", c.LocalAuth, c.RemoteAuth, c.PSK)
	}
	if len(c.LocalCerts) != 1 || !c.LocalCerts[0].X509.Equal(gw.X509) || c.LocalCerts[0].KeyFile != "gw.key" || len(c.Intermediates) != 1 {
		t.Errorf("local certs %+v, intermediates %d", c.LocalCerts, len(c.Intermediates))
	}
	if c.LocalID.Type != message.IDDerASN1DN || c.LocalID.String() != "C=CH, O=keyplane test, CN=gw.example.org" {
		t.Errorf("default local id %s", c.LocalID)
	}
	if !c.RemoteID.Wildcard() || !c.RemoteID.Matches(message.IDDerASN1DN, peer.Inter.X509.RawSubject) || c.RemoteID.Matches(message.IDFQDN, []byte("x")) {
		t.Errorf("remote id %s", c.RemoteID)
	}
	if c.Trust == nil || len(c.CACerts) != 1 || len(c.CRLs) != 1 || c.Revocation != pki.RevocationStrict || c.Fragmentation != FragAccept {
		t.Errorf("trust %v cas %d crls %d revocation %v fragmentation %v", c.Trust, len(c.CACerts), len(c.CRLs), c.Revocation, c.Fragmentation)
	}
	if cfg.Daemon.FragmentSize != DefaultFragmentSize {
		t.Errorf("fragment_size %d", cfg.Daemon.FragmentSize)
	}
	// Mixed: a certificate here, a PSK from the peer.
	cfg, err = Parse(filepath.Join(dir, "kp.conf"), []byte(pubkeyConf(gwKey, pkLocal, "\t\t\tauth = psk", "psk_env = X")),
		Options{Getenv: func(string) (string, bool) { return "a long enough secret", true }})
	if err != nil || cfg.Connections[0].PSK == nil || cfg.Connections[0].RemoteAuth != AuthPSK {
		t.Errorf("mixed: %v", err)
	}
}

// TestPubkeyConfigErrors: what is wrong is named, with the file's line
// and the setting; a key file others can read is refused as a PSK file
// is.
func TestPubkeyConfigErrors(t *testing.T) {
	dir, _, _ := pubkeyDir(t)
	if err := os.Chmod(filepath.Join(dir, "other.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	testpki.Write(t, dir, "enc.key", []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	for _, c := range []struct {
		name, src     string
		field, substr string
		is            error
	}{
		{"no key", pubkeyConf("", pkLocal, pkRemote, ""), "local.certs", "no private key in the secrets section", nil},
		{"permissive key", pubkeyConf("\tprivate-x {\n\t\tfile = other.key\n\t}", pkLocal, pkRemote, ""), "secrets.private-x.file", "group or others", secretfile.ErrPermissive},
		{"encrypted key", pubkeyConf("\tprivate-x {\n\t\tfile = enc.key\n\t}", pkLocal, pkRemote, ""), "secrets.private-x.file", "encrypted", pki.ErrEncryptedKey},
		{"passphrase", pubkeyConf("\tprivate-x {\n\t\tfile = gw.key\n\t\tsecret = pw\n\t}", pkLocal, pkRemote, ""), "secrets.private-x.secret", "not supported", nil},
		{"unknown secret", pubkeyConf("\tike-x {\n\t\tfile = gw.key\n\t}", pkLocal, pkRemote, ""), "secrets.ike-x", "unknown secret type", nil},
		{"no certs", pubkeyConf(gwKey, "\t\t\tauth = pubkey", pkRemote, ""), "local.certs", "needs certs", nil},
		{"no cacerts", pubkeyConf(gwKey, pkLocal, "\t\t\tauth = pubkey", ""), "remote.cacerts", "needs cacerts", nil},
		{"missing cert", pubkeyConf(gwKey, "\t\t\tauth = pubkey\n\t\t\tcerts = nope.pem", pkRemote, ""), "local.certs", "no such file", os.ErrNotExist},
		{"not a cert", pubkeyConf(gwKey, "\t\t\tauth = pubkey\n\t\t\tcerts = gw.key", pkRemote, ""), "local.certs", "no CERTIFICATE", pki.ErrFormat},
		{"not a CA", pubkeyConf(gwKey, pkLocal, "\t\t\tauth = pubkey\n\t\t\tcacerts = gw.pem", ""), "remote.cacerts", "not a CA", pki.ErrNotCA},
		{"bad crl", pubkeyConf(gwKey, pkLocal, pkRemote+"\n\t\t\tcrls = ca.pem", ""), "remote.crls", "CRL", pki.ErrFormat},
		{"revocation", pubkeyConf(gwKey, pkLocal, pkRemote+"\n\t\t\trevocation = paranoid", ""), "remote.revocation", "strict, ifuri or relaxed", nil},
		{"auth", pubkeyConf(gwKey, "\t\t\tauth = eap", pkRemote, ""), "local.auth", "psk or pubkey", nil},
		{"certs with psk", pubkeyConf(gwKey, "\t\t\tauth = psk\n\t\t\tcerts = gw.pem", pkRemote, "psk_env = X"), "local.certs", "only with auth = pubkey", nil},
		{"psk unused", pubkeyConf(gwKey, pkLocal, pkRemote, "psk_env = X"), "psk_env", "no pre-shared key is used", nil},
		{"fragmentation", pubkeyConf(gwKey, pkLocal, pkRemote, "fragmentation = maybe"), "fragmentation", "yes, accept, force or no", nil},
		{"fragment_size", "daemon {\n fragment_size = 100\n}\n", "daemon.fragment_size", "want 576 to 65535", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "kp.conf"), []byte(c.src), Options{Getenv: func(string) (string, bool) { return "a long enough secret", true }})
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if ce.Field != c.field || !strings.Contains(err.Error(), c.substr) || ce.Line == 0 {
				t.Errorf("got %v (field %q line %d); want field %q, ~%q", err, ce.Field, ce.Line, c.field, c.substr)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%v is not %v", err, c.is)
			}
		})
	}
}

// TestDNIdentity: distinguished names as strongSwan writes them, with or
// without asn1dn:, and their wildcards.
func TestDNIdentity(t *testing.T) {
	id, err := ParseIdentity("C=CH, O=strongSwan, CN=moon.strongswan.org")
	if err != nil || id.Type != message.IDDerASN1DN || id.String() != "C=CH, O=strongSwan, CN=moon.strongswan.org" || id.Wildcard() {
		t.Fatalf("%v %v", id, err)
	}
	der, _ := pki.ParseDN("C=CH, O=strongSwan, CN=moon.strongswan.org")
	if p, _ := ParseIdentity("asn1dn:C=CH, O=strongSwan, CN=*"); !p.Wildcard() || !p.Matches(message.IDDerASN1DN, der) {
		t.Errorf("wildcard DN %v", p)
	}
	if p, _ := ParseIdentity("C=CH, O=other, CN=*"); p.Matches(message.IDDerASN1DN, der) {
		t.Error("a DN of another O matched")
	}
	if p, _ := ParseIdentity("*.strongswan.org"); !p.Wildcard() || !p.Matches(message.IDFQDN, []byte("moon.strongswan.org")) {
		t.Error("FQDN wildcard")
	}
	if _, err := ParseIdentity("asn1dn:XX=1"); err == nil {
		t.Error("bad DN accepted")
	}
	// Not a DN: '=' in a name that does not parse as one stays an FQDN.
	if id, _ := ParseIdentity("a=b=c"); id.Type != message.IDFQDN {
		t.Errorf("a=b=c: %v", id.Type)
	}
}

// TestPubkeyValidate: a Config built in Go gets the parser's checks of
// the public key settings: an end with pubkey needs a certificate with
// its key, or CAs and the trust store built of them; fragment_size and
// fragmentation are bounded; no pre-shared key is needed when neither
// end uses one.
func TestPubkeyValidate(t *testing.T) {
	dir, _, _ := pubkeyDir(t)
	parsed, err := Parse(filepath.Join(dir, "kp.conf"), []byte(pubkeyConf(gwKey, pkLocal, pkRemote, "")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Validate(); err != nil {
		t.Fatalf("a parsed pubkey config: %v", err)
	}
	good := parsed.Connections[0]
	for _, c := range []struct {
		name, field, substr string
		edit                func(*Config, *Connection)
	}{
		{"no local certs", "local.certs", "needs certs", func(_ *Config, c *Connection) { c.LocalCerts = nil }},
		{"cert without key", "local.certs", "without its private key", func(_ *Config, c *Connection) {
			c.LocalCerts = []LocalCert{{Cert: c.LocalCerts[0].Cert}}
		}},
		{"no cacerts", "remote.cacerts", "needs cacerts", func(_ *Config, c *Connection) { c.CACerts = nil }},
		{"no trust store", "remote.cacerts", "no trust store", func(_ *Config, c *Connection) { c.Trust = nil }},
		{"revocation", "remote.revocation", "strict, ifuri or relaxed", func(_ *Config, c *Connection) { c.Revocation = 9 }},
		{"auth", "local.auth", "psk or pubkey", func(_ *Config, c *Connection) { c.LocalAuth = 7 }},
		{"psk needed", "psk_file", "no pre-shared key", func(_ *Config, c *Connection) { c.RemoteAuth = AuthPSK }},
		{"fragmentation", "fragmentation", "yes, accept, force or no", func(_ *Config, c *Connection) { c.Fragmentation = 9 }},
		{"fragment_size", "daemon.fragment_size", "want 576 to 65535", func(cfg *Config, _ *Connection) { cfg.Daemon.FragmentSize = 500 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Defaults()
			conn := *good
			cfg.Connections = []*Connection{&conn}
			c.edit(cfg, &conn)
			err := cfg.Validate()
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Validate: %v, want an *Error", err)
			}
			if ce.Field != c.field || !strings.Contains(err.Error(), c.substr) {
				t.Errorf("got %v (field %q); want field %q, ~%q", err, ce.Field, c.field, c.substr)
			}
		})
	}
}

// TestPubkeyCompare: a reload that reads other certificates, CAs, CRLs
// (the same file renewed), another revocation policy, fragmentation or
// fragment_size reports the connection or setting as changed.
func TestPubkeyCompare(t *testing.T) {
	dir, peer, _ := pubkeyDir(t)
	parse := func(local, remote, extra string) *Config {
		t.Helper()
		cfg, err := Parse(filepath.Join(dir, "kp.conf"), []byte(pubkeyConf(gwKey, local, remote, extra)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	old := parse(pkLocal, pkRemote+"\n"+pubkeyCRL, "")
	if d := Compare(old, parse(pkLocal, pkRemote+"\n"+pubkeyCRL, "")); !d.Changed.Empty() || len(d.Settings) != 0 {
		t.Errorf("same files: %+v", d)
	}
	for name, nc := range map[string]*Config{
		"revocation":    parse(pkLocal, pkRemote+"\n\t\t\tcrls = peer.crl", ""),
		"fragmentation": parse(pkLocal, pkRemote+"\n"+pubkeyCRL, "fragmentation = no"),
		"no crl":        parse(pkLocal, pkRemote, ""),
	} {
		if d := Compare(old, nc); len(d.Changed.Connections) != 1 {
			t.Errorf("%s: %+v", name, d)
		}
	}
	// The CRL file renewed in place.
	testpki.Write(t, dir, "peer.crl", testpki.CRLPEM(testpki.CRL(t, peer.Inter, peer.Inter.X509)))
	if d := Compare(old, parse(pkLocal, pkRemote+"\n"+pubkeyCRL, "")); len(d.Changed.Connections) != 1 {
		t.Errorf("renewed CRL: %+v", d)
	}
	fs := Defaults()
	fs.Daemon.FragmentSize = 1400
	if d := Compare(Defaults(), fs); len(d.Settings) != 1 || d.Settings[0] != "daemon.fragment_size" {
		t.Errorf("fragment_size: %+v", d.Settings)
	}
}
