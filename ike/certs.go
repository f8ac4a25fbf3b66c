package ike

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/pki"
)

// CertInfo is a certificate or CRL of the running configuration, for
// `keyplane certs list`.
type CertInfo struct {
	// Kind is "local" (a certificate of local.certs with its private
	// key), "intermediate" (one of local.certs without), "ca" (of
	// remote.cacerts) or "crl" (of remote.crls).
	Kind    string `json:"kind"`
	Subject string `json:"subject"` // a CRL's: its issuer
	Issuer  string `json:"issuer"`
	Serial  string `json:"serial,omitempty"`
	// NotBefore and NotAfter are the validity; a CRL's this and next
	// update.
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	File      string    `json:"file"`
	KeyFile   string    `json:"key_file,omitempty"`
	Revoked   int       `json:"revoked,omitempty"` // a CRL's entries
	// Connections use it.
	Connections []string `json:"connections"`
}

// Certs lists the certificates and CRLs the configuration loaded, each
// once, with the connections that use it.
func (e *Engine) Certs(ctx context.Context) ([]CertInfo, error) {
	var out []CertInfo
	err := e.call(ctx, func() { out = certsOf(e.cfg) })
	return out, err
}

// certsOf lists a configuration's certificates and CRLs.
func certsOf(cfg *config.Config) []CertInfo {
	var out []CertInfo
	index := map[string]int{}
	add := func(kind string, raw []byte, conn string, info func() CertInfo) {
		k := fmt.Sprintf("%s %x", kind, sha256.Sum256(raw))
		if i, ok := index[k]; ok {
			if !slices.Contains(out[i].Connections, conn) {
				out[i].Connections = append(out[i].Connections, conn)
			}
			return
		}
		ci := info()
		ci.Kind, ci.Connections = kind, []string{conn}
		index[k] = len(out)
		out = append(out, ci)
	}
	cert := func(c *x509.Certificate, file string) CertInfo {
		return CertInfo{Subject: pki.DNString(c.RawSubject), Issuer: pki.DNString(c.RawIssuer), Serial: c.SerialNumber.Text(16),
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, File: file}
	}
	for _, c := range cfg.Connections {
		for _, lc := range c.LocalCerts {
			add("local", lc.X509.Raw, c.Name, func() CertInfo {
				ci := cert(lc.X509, lc.File)
				ci.KeyFile = lc.KeyFile
				return ci
			})
		}
		for _, x := range c.Intermediates {
			add("intermediate", x.X509.Raw, c.Name, func() CertInfo { return cert(x.X509, x.File) })
		}
		for _, x := range c.CACerts {
			add("ca", x.X509.Raw, c.Name, func() CertInfo { return cert(x.X509, x.File) })
		}
		for _, x := range c.CRLs {
			add("crl", x.X509.Raw, c.Name, func() CertInfo {
				return CertInfo{Subject: pki.DNString(x.X509.RawIssuer), Issuer: pki.DNString(x.X509.RawIssuer),
					NotBefore: x.X509.ThisUpdate, NotAfter: x.X509.NextUpdate, File: x.File,
					Revoked: len(x.X509.RevokedCertificateEntries)}
			})
		}
	}
	return out
}
