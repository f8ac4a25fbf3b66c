package message

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// TS is the TSi or TSr payload (RFC 7296 §3.13).
type TS struct {
	// Responder selects TSr; false is TSi.
	Responder bool
	Selectors []TrafficSelector
}

func (p *TS) Type() PayloadType {
	if p.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}

// TrafficSelector is one traffic selector (RFC 7296 §3.13.1). For
// TS_IPV4_ADDR_RANGE and TS_IPV6_ADDR_RANGE the fields are decoded and Raw is
// nil; a selector of another type (TS_SECLABEL, RFC 9478, for example) is kept
// whole in Raw, type and length octets included, and sent back verbatim.
type TrafficSelector struct {
	Type TSType
	// IPProto is the IP protocol number, 0 for any.
	IPProto uint8
	// StartPort and EndPort: 0-65535 is any port; 65535-0 is OPAQUE.
	StartPort, EndPort uint16
	Start, End         netip.Addr
	Raw                []byte
}

// SelectorFromPrefix returns the selector covering prefix p, all ports and
// the given protocol.
func SelectorFromPrefix(p netip.Prefix, proto uint8) TrafficSelector {
	p = p.Masked()
	start := p.Addr()
	end := start
	if start.Is4() {
		a := start.As4()
		bits := p.Bits()
		for i := range 4 {
			keep := max(0, min(8, bits-8*i))
			a[i] |= byte(0xff >> keep)
		}
		end = netip.AddrFrom4(a)
		return TrafficSelector{Type: TSIPv4AddrRange, IPProto: proto, EndPort: 0xffff, Start: start, End: end}
	}
	a := start.As16()
	bits := p.Bits()
	for i := range 16 {
		keep := max(0, min(8, bits-8*i))
		a[i] |= byte(0xff >> keep)
	}
	end = netip.AddrFrom16(a)
	return TrafficSelector{Type: TSIPv6AddrRange, IPProto: proto, EndPort: 0xffff, Start: start, End: end}
}

func (s TrafficSelector) String() string {
	if s.Raw != nil {
		return fmt.Sprintf("%v(%d bytes)", s.Type, len(s.Raw))
	}
	return fmt.Sprintf("%v-%v proto %d ports %d-%d", s.Start, s.End, s.IPProto, s.StartPort, s.EndPort)
}

func (p *TS) String() string {
	parts := make([]string, len(p.Selectors))
	for i, s := range p.Selectors {
		parts[i] = s.String()
	}
	return p.Type().String() + "(" + strings.Join(parts, ", ") + ")"
}

func (p *TS) appendBody(b []byte) ([]byte, error) {
	t := p.Type()
	if len(p.Selectors) == 0 || len(p.Selectors) > 255 {
		return nil, eerr(t, "%d traffic selectors", len(p.Selectors))
	}
	b = append(b, byte(len(p.Selectors)), 0, 0, 0)
	for _, s := range p.Selectors {
		switch {
		case s.Raw != nil:
			if len(s.Raw) < 4 || len(s.Raw) > 0xffff || s.Raw[0] != byte(s.Type) || int(binary.BigEndian.Uint16(s.Raw[2:])) != len(s.Raw) {
				return nil, eerr(t, "raw %v selector is not a well-formed substructure", s.Type)
			}
			b = append(b, s.Raw...)
		case s.Type == TSIPv4AddrRange:
			if !s.Start.Is4() || !s.End.Is4() {
				return nil, eerr(t, "%v with addresses %v and %v", s.Type, s.Start, s.End)
			}
			b = append(b, byte(s.Type), s.IPProto, 0, 16)
			b = binary.BigEndian.AppendUint16(b, s.StartPort)
			b = binary.BigEndian.AppendUint16(b, s.EndPort)
			b = append(b, s.Start.AsSlice()...)
			b = append(b, s.End.AsSlice()...)
		case s.Type == TSIPv6AddrRange:
			if !s.Start.Is6() || !s.End.Is6() {
				return nil, eerr(t, "%v with addresses %v and %v", s.Type, s.Start, s.End)
			}
			b = append(b, byte(s.Type), s.IPProto, 0, 40)
			b = binary.BigEndian.AppendUint16(b, s.StartPort)
			b = binary.BigEndian.AppendUint16(b, s.EndPort)
			s16, e16 := s.Start.As16(), s.End.As16()
			b = append(b, s16[:]...)
			b = append(b, e16[:]...)
		default:
			return nil, eerr(t, "%v selector without Raw bytes", s.Type)
		}
	}
	return b, nil
}

func decodeTS(t PayloadType, body []byte, off int) (*TS, error) {
	if len(body) < 4 {
		return nil, perr(off, t, ErrTruncated, "TS body is %d bytes, need at least 4", len(body))
	}
	n := int(body[0])
	if n == 0 {
		return nil, perr(off, t, ErrInvalidSyntax, "no traffic selectors")
	}
	p := &TS{Responder: t == PayloadTSr}
	pos := 4
	for i := range n {
		rest := body[pos:]
		o := off + pos
		if len(rest) < 4 {
			return nil, perr(o, t, ErrTruncated, "%d selectors announced, selector %d needs a 4-byte header, have %d bytes", n, i+1, len(rest))
		}
		typ := TSType(rest[0])
		slen := int(binary.BigEndian.Uint16(rest[2:]))
		if slen < 4 {
			return nil, perr(o+2, t, ErrInvalidSyntax, "selector length %d", slen)
		}
		if slen > len(rest) {
			return nil, perr(o+2, t, ErrTruncated, "selector length %d, %d bytes left", slen, len(rest))
		}
		s := TrafficSelector{Type: typ}
		switch typ {
		case TSIPv4AddrRange, TSIPv6AddrRange:
			want := 16
			if typ == TSIPv6AddrRange {
				want = 40
			}
			if slen != want {
				return nil, perr(o+2, t, ErrInvalidSyntax, "%v selector of length %d, need %d", typ, slen, want)
			}
			s.IPProto = rest[1]
			s.StartPort = binary.BigEndian.Uint16(rest[4:])
			s.EndPort = binary.BigEndian.Uint16(rest[6:])
			alen := (want - 8) / 2
			s.Start, _ = netip.AddrFromSlice(rest[8 : 8+alen])
			s.End, _ = netip.AddrFromSlice(rest[8+alen : 8+2*alen])
		default:
			s.Raw = rest[:slen]
		}
		p.Selectors = append(p.Selectors, s)
		pos += slen
	}
	if pos != len(body) {
		return nil, perr(off+pos, t, ErrInvalidSyntax, "%d bytes after the %d traffic selectors", len(body)-pos, n)
	}
	return p, nil
}
