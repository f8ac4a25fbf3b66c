package pki

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net/netip"
	"testing"

	"github.com/keyplane/keyplane/ike/message"
)

func TestParseDN(t *testing.T) {
	// Go's own encoding of the same name (PrintableString values, in this
	// order) is the reference.
	want, err := asn1.Marshal(pkix.Name{Country: []string{"CH"}, Organization: []string{"strongSwan"},
		OrganizationalUnit: []string{"Test"}, CommonName: "moon.strongswan.org"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"C=CH, O=strongSwan, OU=Test, CN=moon.strongswan.org",
		"/C=CH/O=strongSwan/OU=Test/CN=moon.strongswan.org",
		"c=CH,o=strongSwan,  ou = Test ,cn=moon.strongswan.org",
	} {
		got, err := ParseDN(s)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: %x, %v", s, got, err)
		}
	}
	der, err := ParseDN("C=DE, O=Müller GmbH, E=vpn@example.org, DC=example, CN=*")
	if err != nil {
		t.Fatal(err)
	}
	if got := DNString(der); got != "C=DE, O=Müller GmbH, E=vpn@example.org, DC=example, CN=*" {
		t.Errorf("DNString %q", got)
	}
	attrs, _ := parseDNAttrs(der)
	if attrs[1].tag != 12 || attrs[2].tag != 22 || attrs[0].tag != 19 { // UTF8String, IA5String, PrintableString
		t.Errorf("string types %v %v %v", attrs[0].tag, attrs[1].tag, attrs[2].tag)
	}
	for _, bad := range []string{"", ",", "CN", "CN=", "=x", "X=1, CN=a", "E=müller@example.org", "CN=\xff"} {
		if _, err := ParseDN(bad); !errors.Is(err, ErrDN) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if got := DNString([]byte{1, 2}); got != "(invalid DN 0102)" {
		t.Errorf("invalid DN prints %q", got)
	}
}

func mustDN(t *testing.T, s string) []byte {
	t.Helper()
	d, err := ParseDN(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestMatchDN follows strongSwan's compare_dn: order and types matter,
// PrintableString values compare without case, others byte for byte, and
// "*" in the pattern matches one value.
func TestMatchDN(t *testing.T) {
	dn := mustDN(t, "C=CH, O=keyplane test, CN=moon.example.org")
	for _, c := range []struct {
		pattern string
		ok      bool
		wc      int
	}{
		{"C=CH, O=keyplane test, CN=moon.example.org", true, 0},
		{"C=ch, O=KEYPLANE TEST, CN=Moon.Example.Org", true, 0},
		{"C=CH, O=keyplane test, CN=*", true, 1},
		{"C=*, O=*, CN=*", true, 3},
		{"C=CH, CN=*", false, 0},
		{"O=keyplane test, C=CH, CN=moon.example.org", false, 0},
		{"C=CH, O=keyplane test, CN=sun.example.org", false, 0},
		{"C=CH, O=keyplane test, CN=moon.example.org, OU=x", false, 0},
		{"C=CH, O=keyplane test, OU=moon.example.org", false, 0},
	} {
		ok, wc := MatchDN(dn, mustDN(t, c.pattern))
		if ok != c.ok || wc != c.wc {
			t.Errorf("%q: %v %d", c.pattern, ok, wc)
		}
	}
	// UTF8String values are compared byte for byte.
	utf := mustDN(t, "CN=Müller")
	if ok, _ := MatchDN(utf, mustDN(t, "CN=müller")); ok {
		t.Error("UTF8String compared without case")
	}
	if ok, _ := MatchDN(utf, mustDN(t, "CN=Müller")); !ok {
		t.Error("equal UTF8String")
	}
	if ok, _ := MatchDN([]byte{0x30, 0x01}, dn); ok {
		t.Error("malformed DN matched")
	}
}

func TestIDMatches(t *testing.T) {
	fqdn := func(s string) Identity { return Identity{Type: message.IDFQDN, Data: []byte(s)} }
	email := func(s string) Identity { return Identity{Type: message.IDRFC822Addr, Data: []byte(s)} }
	ip := func(s string) Identity {
		a := netip.MustParseAddr(s)
		id := message.IDFromAddr(a, false)
		return Identity{Type: id.IDType, Data: id.Data}
	}
	dn := func(s string) Identity { return Identity{Type: message.IDDerASN1DN, Data: mustDN(t, s)} }
	for _, c := range []struct {
		id, pattern Identity
		want        Match
	}{
		{fqdn("vpn.example.org"), fqdn("vpn.example.org"), MatchPerfect},
		{fqdn("vpn.example.org"), fqdn("VPN.Example.ORG"), MatchPerfect},
		{fqdn("vpn.example.org"), fqdn("*.example.org"), MatchPerfect - 1},
		{fqdn("vpn.example.org"), fqdn("*"), MatchAny},
		{fqdn("vpn.example.org"), fqdn("*.example.com"), MatchNone},
		{fqdn("example.org"), fqdn("*.example.org"), MatchNone},
		{fqdn("vpn.example.org"), Identity{}, MatchAny},
		{email("carol@example.org"), email("*@example.org"), MatchPerfect - 1},
		{email("carol@example.org"), fqdn("carol@example.org"), MatchNone},
		{ip("192.0.2.1"), ip("192.0.2.1"), MatchPerfect},
		{ip("192.0.2.1"), ip("192.0.2.2"), MatchNone},
		{ip("2001:db8::1"), ip("2001:db8::1"), MatchPerfect},
		{dn("C=CH, CN=moon"), dn("C=CH, CN=*"), MatchPerfect - 1},
		{dn("C=CH, CN=moon"), dn("C=*, CN=*"), MatchPerfect - 2},
		{dn("C=CH, CN=moon"), dn("C=CH, CN=sun"), MatchNone},
	} {
		if got := IDMatches(c.id, c.pattern); got != c.want {
			t.Errorf("%v against %v: %d, want %d", c.id, c.pattern, got, c.want)
		}
	}
}

// TestCertMatches: a peer's IKE identity against its certificate: subject
// DN, subjectAltName DNS, email and IP, and the certificate hash as key ID.
func TestCertMatches(t *testing.T) {
	p := newPKI(t, "p256")
	v4 := netip.MustParseAddr("192.0.2.1").As4()
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	h := sha1.Sum(p.leaf.Raw)
	for _, c := range []struct {
		id   Identity
		want Match
	}{
		{Identity{message.IDDerASN1DN, p.leaf.RawSubject}, MatchPerfect},
		{Identity{message.IDDerASN1DN, mustDN(t, "C=CH, O=Keyplane Test, CN=MOON.example.org")}, MatchPerfect},
		{Identity{message.IDDerASN1DN, mustDN(t, "C=CH, O=keyplane test, CN=*")}, MatchPerfect - 1},
		{Identity{message.IDDerASN1DN, mustDN(t, "C=CH, O=keyplane test, CN=sun.example.org")}, MatchNone},
		{Identity{message.IDFQDN, []byte("vpn.example.org")}, MatchPerfect},
		{Identity{message.IDFQDN, []byte("*.example.org")}, MatchPerfect - 1},
		{Identity{message.IDFQDN, []byte("sun.example.org")}, MatchNone},
		{Identity{message.IDRFC822Addr, []byte("admin@example.org")}, MatchPerfect},
		{Identity{message.IDRFC822Addr, []byte("carol@example.org")}, MatchNone},
		{Identity{message.IDIPv4Addr, v4[:]}, MatchPerfect},
		{Identity{message.IDIPv6Addr, v6[:]}, MatchPerfect},
		{Identity{message.IDIPv4Addr, []byte{192, 0, 2, 2}}, MatchNone},
		{Identity{message.IDKeyID, h[:]}, MatchPerfect},
		{Identity{message.IDKeyID, []byte("other")}, MatchNone},
		{Identity{}, MatchAny},
	} {
		if got := CertMatches(p.leaf, c.id); got != c.want {
			t.Errorf("%v: %d, want %d", c.id, got, c.want)
		}
	}
	if s := (Identity{message.IDDerASN1DN, p.leaf.RawSubject}).String(); s != "C=CH, O=keyplane test, CN=moon.example.org" {
		t.Errorf("String %q", s)
	}
}
