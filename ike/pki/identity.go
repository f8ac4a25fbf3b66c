package pki

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"strings"

	"github.com/keyplane/keyplane/ike/message"
)

// Identity is an IKE identity (RFC 7296 §3.5) as it travels in an ID
// payload: for ID_DER_ASN1_DN the DER name (ParseDN), for ID_FQDN and
// ID_RFC822_ADDR the text, for the address types the 4 or 16 octets. A
// zero Type is strongSwan's %any.
type Identity struct {
	Type message.IDType
	Data []byte
}

func (id Identity) String() string {
	switch id.Type {
	case 0:
		return "%any"
	case message.IDDerASN1DN:
		return DNString(id.Data)
	}
	return (&message.ID{IDType: id.Type, Data: id.Data}).String()
}

// Match is how well an identity matches a pattern, strongSwan's
// id_match_t: the higher the better, 0 none.
type Match int

// Match qualities.
const (
	MatchNone Match = 0
	// MatchAny: the pattern is %any (or a lone "*").
	MatchAny Match = 1
	// MatchPerfect: equal, no wildcard used. A DN match with n wildcard
	// RDNs is MatchPerfect-n; a name matched by a leading "*" is
	// MatchPerfect-1.
	MatchPerfect Match = 20
)

// maxDNWildcards bounds the wildcards counted in a DN match (strongSwan's
// ID_MATCH_ONE_WILDCARD - ID_MATCH_MAX_WILDCARDS).
const maxDNWildcards = 17

// IDMatches says how well id matches pattern, with strongSwan's rules
// (identification_t's matches): a %any pattern matches anything; types
// must be equal; DNs as MatchDN does, "*" as an RDN value being a
// wildcard; FQDN and RFC 822 names equal ignoring case, or, for a pattern
// starting with "*", ending with the rest of it ("*.example.com",
// "*@example.com"); other types byte for byte. Wildcards belong in
// configured patterns: pass the peer's received ID as id.
func IDMatches(id, pattern Identity) Match {
	if pattern.Type == 0 {
		return MatchAny
	}
	if id.Type != pattern.Type {
		return MatchNone
	}
	switch id.Type {
	case message.IDDerASN1DN:
		if ok, wc := MatchDN(id.Data, pattern.Data); ok {
			return MatchPerfect - Match(min(wc, maxDNWildcards))
		}
		return MatchNone
	case message.IDFQDN, message.IDRFC822Addr:
		return matchString(string(id.Data), string(pattern.Data))
	}
	if bytes.Equal(id.Data, pattern.Data) {
		return MatchPerfect
	}
	return MatchNone
}

func matchString(s, pattern string) Match {
	if strings.EqualFold(s, pattern) && !strings.ContainsRune(s, 0) {
		return MatchPerfect
	}
	rest, ok := strings.CutPrefix(pattern, "*")
	if !ok {
		return MatchNone
	}
	if rest == "" {
		return MatchAny
	}
	if len(s) >= len(rest) && strings.EqualFold(s[len(s)-len(rest):], rest) {
		return MatchPerfect - 1
	}
	return MatchNone
}

// CertMatches says how well the certificate carries identity id, the best
// of its identities matched against id as the pattern (strongSwan's
// has_subject): the subject DN for ID_DER_ASN1_DN; the subjectAltName DNS
// names, email addresses or IP addresses for ID_FQDN, ID_RFC822_ADDR and
// the address types; for ID_KEY_ID the SHA-1 of the certificate or its
// subjectKeyIdentifier. Wildcards in id are honoured as IDMatches does; a
// peer's certificate is checked with the peer's ID, which carries none.
func CertMatches(cert *x509.Certificate, id Identity) Match {
	if id.Type == 0 {
		return MatchAny
	}
	best := MatchNone
	try := func(t message.IDType, data []byte) {
		if m := IDMatches(Identity{Type: t, Data: data}, id); m > best {
			best = m
		}
	}
	switch id.Type {
	case message.IDDerASN1DN:
		try(message.IDDerASN1DN, cert.RawSubject)
	case message.IDFQDN:
		for _, n := range cert.DNSNames {
			try(message.IDFQDN, []byte(n))
		}
	case message.IDRFC822Addr:
		for _, e := range cert.EmailAddresses {
			try(message.IDRFC822Addr, []byte(e))
		}
	case message.IDIPv4Addr, message.IDIPv6Addr:
		for _, ip := range cert.IPAddresses {
			if v4 := ip.To4(); v4 != nil && id.Type == message.IDIPv4Addr {
				try(message.IDIPv4Addr, v4)
			} else if v4 == nil && id.Type == message.IDIPv6Addr {
				try(message.IDIPv6Addr, ip.To16())
			}
		}
	case message.IDKeyID:
		h := sha1.Sum(cert.Raw)
		if bytes.Equal(id.Data, h[:]) || (len(cert.SubjectKeyId) > 0 && bytes.Equal(id.Data, cert.SubjectKeyId)) {
			best = MatchPerfect
		}
	}
	return best
}
