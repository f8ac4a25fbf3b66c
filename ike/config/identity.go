package config

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/ike/pki"
)

// Identity is an IKE identity (RFC 7296 §3.5). Any matches every peer
// identity (%any); it is never sent.
type Identity struct {
	Type message.IDType
	Data []byte
	Any  bool
}

// ParseIdentity reads an identity as strongSwan does: an IP address is
// ID_IPV4_ADDR/ID_IPV6_ADDR; a distinguished name ("C=CH, O=Org, CN=gw",
// anything with a '=' that parses as one, or the asn1dn: prefix) is
// ID_DER_ASN1_DN; user@host is ID_RFC822_ADDR; @host or a bare name is
// ID_FQDN; @#hex and keyid:text are ID_KEY_ID; the prefixes ipv4: ipv6:
// fqdn: email: rfc822: keyid: force a type; %any matches all. As a
// pattern (a remote id) a DN may hold "*" values and an FQDN or email
// address a leading "*" (see Matches).
func ParseIdentity(s string) (Identity, error) {
	if s == "" {
		return Identity{}, fmt.Errorf("empty identity")
	}
	if s == "%any" {
		return Identity{Any: true}, nil
	}
	if rest, ok := strings.CutPrefix(s, "asn1dn:"); ok {
		der, err := pki.ParseDN(rest)
		if err != nil {
			return Identity{}, fmt.Errorf("identity %q: %w", s, err)
		}
		return Identity{Type: message.IDDerASN1DN, Data: der}, nil
	}
	if strings.Contains(s, "=") {
		// strongSwan tries a DN first for anything with '='.
		if der, err := pki.ParseDN(s); err == nil {
			return Identity{Type: message.IDDerASN1DN, Data: der}, nil
		}
	}
	if typ, rest, ok := strings.Cut(s, ":"); ok {
		switch strings.ToLower(typ) {
		case "ipv4", "ipv6":
			a, err := netip.ParseAddr(rest)
			if err != nil || (typ == "ipv4") != a.Is4() {
				return Identity{}, fmt.Errorf("identity %q: not an %s address", s, typ)
			}
			return addrIdentity(a), nil
		case "fqdn":
			return Identity{Type: message.IDFQDN, Data: []byte(rest)}, nil
		case "email", "rfc822":
			return Identity{Type: message.IDRFC822Addr, Data: []byte(rest)}, nil
		case "keyid":
			if h, ok := strings.CutPrefix(rest, "#"); ok {
				b, err := hex.DecodeString(h)
				if err != nil || len(b) == 0 {
					return Identity{}, fmt.Errorf("identity %q: bad hex key id", s)
				}
				return Identity{Type: message.IDKeyID, Data: b}, nil
			}
			return Identity{Type: message.IDKeyID, Data: []byte(rest)}, nil
		}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return addrIdentity(a), nil
	}
	if h, ok := strings.CutPrefix(s, "@#"); ok {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) == 0 {
			return Identity{}, fmt.Errorf("identity %q: bad hex key id", s)
		}
		return Identity{Type: message.IDKeyID, Data: b}, nil
	}
	if h, ok := strings.CutPrefix(s, "@"); ok {
		return Identity{Type: message.IDFQDN, Data: []byte(h)}, nil
	}
	if strings.Contains(s, "@") {
		return Identity{Type: message.IDRFC822Addr, Data: []byte(s)}, nil
	}
	return Identity{Type: message.IDFQDN, Data: []byte(s)}, nil
}

func addrIdentity(a netip.Addr) Identity {
	id := message.IDFromAddr(a, false)
	return Identity{Type: id.IDType, Data: id.Data}
}

// AddrIdentity is the identity of an IP address, the default local one.
func AddrIdentity(a netip.Addr) Identity { return addrIdentity(a) }

// Matches reports whether a received ID payload is this identity, with
// strongSwan's rules (pki.IDMatches): %any matches everything, a DN with
// "*" values matches any value there, "*.example.org" any name ending so.
func (id Identity) Matches(t message.IDType, data []byte) bool {
	return id.Match(t, data) > pki.MatchNone
}

// Match is how well a received ID payload matches this identity (the
// higher the better; pki.MatchNone: not at all).
func (id Identity) Match(t message.IDType, data []byte) pki.Match {
	if id.Any {
		return pki.MatchAny
	}
	return pki.IDMatches(pki.Identity{Type: t, Data: data}, id.PKI())
}

// PKI returns the identity as package pki takes it (%any is type 0).
func (id Identity) PKI() pki.Identity {
	if id.Any {
		return pki.Identity{}
	}
	return pki.Identity{Type: id.Type, Data: id.Data}
}

func (id Identity) String() string {
	if id.Any {
		return "%any"
	}
	p := &message.ID{IDType: id.Type, Data: id.Data}
	if id.Type == message.IDDerASN1DN {
		return pki.DNString(id.Data)
	}
	if id.Type == message.IDKeyID {
		return "keyid:#" + hex.EncodeToString(id.Data)
	}
	return p.String()
}

// MarshalText writes the identity as it would be configured.
func (id Identity) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// Wildcard reports whether the identity is a pattern rather than one
// identity: a DN with a "*" value, or a name starting with "*". Such a
// remote id is not sent as IDr.
func (id Identity) Wildcard() bool {
	switch id.Type {
	case message.IDDerASN1DN:
		for part := range strings.SplitSeq(pki.DNString(id.Data), ", ") {
			if strings.HasSuffix(part, "=*") {
				return true
			}
		}
		return false
	case message.IDFQDN, message.IDRFC822Addr:
		return strings.HasPrefix(string(id.Data), "*")
	}
	return false
}
