package config

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/keyplane/keyplane/ike/message"
)

// Identity is an IKE identity (RFC 7296 §3.5). Any matches every peer
// identity (%any); it is never sent.
type Identity struct {
	Type message.IDType
	Data []byte
	Any  bool
}

// ParseIdentity reads an identity as strongSwan does: an IP address is
// ID_IPV4_ADDR/ID_IPV6_ADDR; user@host is ID_RFC822_ADDR; @host or a bare
// name is ID_FQDN; @#hex and keyid:text are ID_KEY_ID; the prefixes
// ipv4: ipv6: fqdn: email: rfc822: keyid: force a type; %any matches all.
func ParseIdentity(s string) (Identity, error) {
	if s == "" {
		return Identity{}, fmt.Errorf("empty identity")
	}
	if s == "%any" {
		return Identity{Any: true}, nil
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

// Matches reports whether a received ID payload is this identity.
func (id Identity) Matches(t message.IDType, data []byte) bool {
	return id.Any || (id.Type == t && bytes.Equal(id.Data, data))
}

func (id Identity) String() string {
	if id.Any {
		return "%any"
	}
	p := &message.ID{IDType: id.Type, Data: id.Data}
	if id.Type == message.IDKeyID {
		return "keyid:#" + hex.EncodeToString(id.Data)
	}
	return p.String()
}

// MarshalText writes the identity as it would be configured.
func (id Identity) MarshalText() ([]byte, error) { return []byte(id.String()), nil }
