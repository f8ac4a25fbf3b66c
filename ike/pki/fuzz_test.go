package pki

import "testing"

// FuzzDN feeds arbitrary octets as a DER distinguished name, as a peer's
// ID_DER_ASN1_DN payload carries it: formatting and matching never panic,
// a name always matches itself, and only a well-formed one matches a
// pattern.
func FuzzDN(f *testing.F) {
	for _, s := range []string{"C=CH, O=strongSwan, CN=moon", "CN=*", "E=a@b.c, DC=example, CN=Müller"} {
		d, err := ParseDN(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d)
	}
	pattern, _ := ParseDN("C=CH, O=*, CN=moon")
	f.Fuzz(func(t *testing.T, der []byte) {
		s := DNString(der)
		if ok, wc := MatchDN(der, der); !ok || wc != 0 {
			t.Fatalf("%q does not match itself", s)
		}
		if ok, _ := MatchDN(der, pattern); ok {
			if _, err := parseDNAttrs(der); err != nil {
				t.Fatalf("unparsable DN matched a pattern: %v", err)
			}
		}
	})
}

// FuzzLoad feeds arbitrary files to the loaders: they never panic and fail
// only with a *LoadError.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, err := range []error{
			func() error { _, err := ParseCertificates(data); return err }(),
			func() error { _, err := ParseCRL(data); return err }(),
			func() error { _, err := ParsePrivateKey(data); return err }(),
		} {
			if err == nil {
				continue
			}
			if _, ok := err.(*LoadError); !ok {
				t.Fatalf("untyped error %T %v", err, err)
			}
		}
	})
}
