package pki

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrDN is wrapped by errors about a distinguished name that cannot be
// parsed or encoded.
var ErrDN = errors.New("pki: bad distinguished name")

// rdnType is an attribute type of a distinguished name: its names in
// strongSwan's syntax (the first one is printed) and its OID. ia5 marks
// the types encoded as IA5String (email addresses, domain components).
type rdnType struct {
	names []string
	oid   asn1.ObjectIdentifier
	ia5   bool
}

var rdnTypes = []rdnType{
	{[]string{"C"}, asn1.ObjectIdentifier{2, 5, 4, 6}, false},
	{[]string{"ST", "S"}, asn1.ObjectIdentifier{2, 5, 4, 8}, false},
	{[]string{"L"}, asn1.ObjectIdentifier{2, 5, 4, 7}, false},
	{[]string{"O"}, asn1.ObjectIdentifier{2, 5, 4, 10}, false},
	{[]string{"OU"}, asn1.ObjectIdentifier{2, 5, 4, 11}, false},
	{[]string{"CN"}, asn1.ObjectIdentifier{2, 5, 4, 3}, false},
	{[]string{"SN", "surname"}, asn1.ObjectIdentifier{2, 5, 4, 4}, false},
	{[]string{"serialNumber"}, asn1.ObjectIdentifier{2, 5, 4, 5}, false},
	{[]string{"street"}, asn1.ObjectIdentifier{2, 5, 4, 9}, false},
	{[]string{"T", "title"}, asn1.ObjectIdentifier{2, 5, 4, 12}, false},
	{[]string{"D", "description"}, asn1.ObjectIdentifier{2, 5, 4, 13}, false},
	{[]string{"postalCode"}, asn1.ObjectIdentifier{2, 5, 4, 17}, false},
	{[]string{"N", "name"}, asn1.ObjectIdentifier{2, 5, 4, 41}, false},
	{[]string{"G", "GN", "givenName"}, asn1.ObjectIdentifier{2, 5, 4, 42}, false},
	{[]string{"I", "initials"}, asn1.ObjectIdentifier{2, 5, 4, 43}, false},
	{[]string{"dnQualifier"}, asn1.ObjectIdentifier{2, 5, 4, 46}, false},
	{[]string{"pseudonym"}, asn1.ObjectIdentifier{2, 5, 4, 65}, false},
	{[]string{"E", "Email", "emailAddress"}, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, true},
	{[]string{"UID"}, asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, false},
	{[]string{"DC"}, asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, true},
}

var oidEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

func rdnByName(name string) (rdnType, bool) {
	for _, t := range rdnTypes {
		for _, n := range t.names {
			if strings.EqualFold(n, name) {
				return t, true
			}
		}
	}
	return rdnType{}, false
}

func rdnByOID(oid asn1.ObjectIdentifier) (rdnType, bool) {
	for _, t := range rdnTypes {
		if t.oid.Equal(oid) {
			return t, true
		}
	}
	return rdnType{}, false
}

// ParseDN reads a distinguished name in strongSwan's syntax, e.g.
// "C=CH, O=strongSwan, CN=moon.strongswan.org" (or with '/' separators,
// "/C=CH/O=strongSwan/CN=moon"), and returns its DER encoding (an
// RDNSequence in the written order), as sent in an ID_DER_ASN1_DN
// identity. Values are PrintableString when they can be, UTF8String
// otherwise; E and DC are IA5String. A value "*" is a wildcard for
// matching (MatchDN).
func ParseDN(s string) ([]byte, error) {
	var b cryptobyte.Builder
	n := 0
	var err error
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for part := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == '/' }) {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			key, val, ok := strings.Cut(part, "=")
			key, val = strings.TrimSpace(key), strings.TrimSpace(val)
			if !ok || key == "" || val == "" {
				err = fmt.Errorf("%w %q: %q is not TYPE=value", ErrDN, s, part)
				return
			}
			t, ok := rdnByName(key)
			if !ok {
				err = fmt.Errorf("%w %q: unknown attribute type %q", ErrDN, s, key)
				return
			}
			if !utf8.ValidString(val) {
				err = fmt.Errorf("%w %q: value of %s is not UTF-8", ErrDN, s, key)
				return
			}
			tag := cbasn1.UTF8String
			switch {
			case t.ia5:
				if !isIA5(val) {
					err = fmt.Errorf("%w %q: %s must be ASCII", ErrDN, s, key)
					return
				}
				tag = cbasn1.IA5String
			case isPrintable(val):
				tag = cbasn1.PrintableString
			}
			n++
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(t.oid)
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(val)) })
				})
			})
		}
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w %q: no attributes", ErrDN, s)
	}
	return b.Bytes()
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isPrintable reports whether s fits ASN.1 PrintableString ('*' is
// allowed too, as in strongSwan's wildcards and common real-world names).
func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(" '()+,-./:=?*", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// attr is one AttributeTypeAndValue of a DN, RDN sets flattened in order,
// as strongSwan's RDN enumerator walks them.
type attr struct {
	oid   asn1.ObjectIdentifier
	tag   cbasn1.Tag
	value []byte
}

func parseDNAttrs(der []byte) ([]attr, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: not a DER RDNSequence", ErrDN)
	}
	var out []attr
	for !seq.Empty() {
		var set cryptobyte.String
		if !seq.ReadASN1(&set, cbasn1.SET) || set.Empty() {
			return nil, fmt.Errorf("%w: malformed RDN", ErrDN)
		}
		for !set.Empty() {
			var atv cryptobyte.String
			var a attr
			var val cryptobyte.String
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&a.oid) ||
				!atv.ReadAnyASN1(&val, &a.tag) || !atv.Empty() {
				return nil, fmt.Errorf("%w: malformed attribute", ErrDN)
			}
			a.value = val
			out = append(out, a)
		}
	}
	return out, nil
}

// DNString formats a DER distinguished name in strongSwan's style,
// "C=CH, O=strongSwan, CN=moon", in the encoded order. Unknown attribute
// types print as their OID; values that are not strings as #hex.
func DNString(der []byte) string {
	attrs, err := parseDNAttrs(der)
	if err != nil {
		return fmt.Sprintf("(invalid DN %x)", der)
	}
	parts := make([]string, 0, len(attrs))
	for _, a := range attrs {
		name := a.oid.String()
		if t, ok := rdnByOID(a.oid); ok {
			name = t.names[0]
		}
		v := string(a.value)
		if !utf8.Valid(a.value) || a.tag == cbasn1.SEQUENCE || a.tag == cbasn1.OCTET_STRING {
			v = fmt.Sprintf("#%x", a.value)
		}
		parts = append(parts, name+"="+v)
	}
	return strings.Join(parts, ", ")
}

// MatchDN reports whether the DER distinguished name dn matches pattern
// (also DER), as strongSwan compares DNs: the same attribute types in the
// same order; values equal, ignoring case where both are PrintableString
// (or both IA5String email addresses), byte for byte otherwise; and a
// pattern value "*" matches any value. wildcards counts those used (0 for
// an exact match).
func MatchDN(dn, pattern []byte) (ok bool, wildcards int) {
	if bytes.Equal(dn, pattern) {
		return true, 0
	}
	a, err1 := parseDNAttrs(dn)
	p, err2 := parseDNAttrs(pattern)
	if err1 != nil || err2 != nil || len(a) != len(p) {
		return false, 0
	}
	for i := range a {
		if !a[i].oid.Equal(p[i].oid) {
			return false, 0
		}
		if string(p[i].value) == "*" {
			wildcards++
			continue
		}
		if len(a[i].value) != len(p[i].value) {
			return false, 0
		}
		caseless := a[i].tag == p[i].tag && (a[i].tag == cbasn1.PrintableString ||
			(a[i].tag == cbasn1.IA5String && a[i].oid.Equal(oidEmail)))
		if caseless {
			if !strings.EqualFold(string(a[i].value), string(p[i].value)) {
				return false, 0
			}
		} else if !bytes.Equal(a[i].value, p[i].value) {
			return false, 0
		}
	}
	return true, wildcards
}
