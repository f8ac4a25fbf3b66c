package message

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The Configuration payload (RFC 7296 §3.15): virtual IPs and the
// servers behind them, asked for by the initiator in IKE_AUTH
// (CFG_REQUEST) and given by the responder (CFG_REPLY).

// CFGType is the CFG Type of a Configuration payload.
type CFGType uint8

const (
	CFGRequest CFGType = 1 // CFG_REQUEST
	CFGReply   CFGType = 2 // CFG_REPLY
	CFGSet     CFGType = 3 // CFG_SET
	CFGAck     CFGType = 4 // CFG_ACK
)

func (t CFGType) String() string {
	switch t {
	case CFGRequest:
		return "CFG_REQUEST"
	case CFGReply:
		return "CFG_REPLY"
	case CFGSet:
		return "CFG_SET"
	case CFGAck:
		return "CFG_ACK"
	}
	return fmt.Sprintf("CFG(%d)", uint8(t))
}

// CFGAttrType is a configuration attribute type (15 bits).
type CFGAttrType uint16

// The attributes keyplane uses (RFC 7296 §3.15.1); others are kept as
// they came.
const (
	InternalIP4Address CFGAttrType = 1  // INTERNAL_IP4_ADDRESS
	InternalIP4Netmask CFGAttrType = 2  // INTERNAL_IP4_NETMASK
	InternalIP4DNS     CFGAttrType = 3  // INTERNAL_IP4_DNS
	InternalIP6Address CFGAttrType = 8  // INTERNAL_IP6_ADDRESS
	InternalIP6DNS     CFGAttrType = 10 // INTERNAL_IP6_DNS
)

func (t CFGAttrType) String() string {
	switch t {
	case InternalIP4Address:
		return "INTERNAL_IP4_ADDRESS"
	case InternalIP4Netmask:
		return "INTERNAL_IP4_NETMASK"
	case InternalIP4DNS:
		return "INTERNAL_IP4_DNS"
	case InternalIP6Address:
		return "INTERNAL_IP6_ADDRESS"
	case InternalIP6DNS:
		return "INTERNAL_IP6_DNS"
	}
	return fmt.Sprintf("CFG_ATTR(%d)", uint16(t))
}

// CFGAttr is one configuration attribute: its type and value. An empty
// value in a request asks for one (RFC 7296 §3.15.1).
type CFGAttr struct {
	Type  CFGAttrType
	Value []byte
}

// CP is the Configuration payload.
type CP struct {
	CFGType CFGType
	Attrs   []CFGAttr
}

func (*CP) Type() PayloadType { return PayloadCP }

// maxCFGAttrs bounds the attributes of one payload, so a received one
// cannot make a decoder loop build a huge slice of empty attributes.
const maxCFGAttrs = 256

func (p *CP) appendBody(b []byte) ([]byte, error) {
	if len(p.Attrs) > maxCFGAttrs {
		return nil, eerr(PayloadCP, "%d attributes; at most %d", len(p.Attrs), maxCFGAttrs)
	}
	b = append(b, byte(p.CFGType), 0, 0, 0)
	for _, a := range p.Attrs {
		if a.Type > 0x7fff {
			return nil, eerr(PayloadCP, "attribute type %d does not fit 15 bits", uint16(a.Type))
		}
		if len(a.Value) > 0xffff {
			return nil, eerr(PayloadCP, "attribute %v of %d bytes", a.Type, len(a.Value))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(a.Type))
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b, nil
}

func decodeCP(body []byte, off int) (*CP, error) {
	if len(body) < 4 {
		return nil, perr(off, PayloadCP, ErrTruncated, "CP body is %d bytes, need at least 4", len(body))
	}
	p := &CP{CFGType: CFGType(body[0])}
	for pos := 4; pos < len(body); {
		if len(body)-pos < 4 {
			return nil, perr(off+pos, PayloadCP, ErrTruncated, "attribute header of %d bytes, need 4", len(body)-pos)
		}
		if len(p.Attrs) == maxCFGAttrs {
			return nil, perr(off+pos, PayloadCP, ErrInvalidSyntax, "more than %d attributes", maxCFGAttrs)
		}
		t := binary.BigEndian.Uint16(body[pos:])
		n := int(binary.BigEndian.Uint16(body[pos+2:]))
		if t&0x8000 != 0 {
			// RFC 7296 §3.15.1: the Reserved bit is zero.
			return nil, perr(off+pos, PayloadCP, ErrInvalidSyntax, "attribute with the reserved bit set")
		}
		if pos+4+n > len(body) {
			return nil, perr(off+pos+2, PayloadCP, ErrTruncated, "attribute %v of %d bytes, %d left", CFGAttrType(t), n, len(body)-pos-4)
		}
		p.Attrs = append(p.Attrs, CFGAttr{Type: CFGAttrType(t), Value: body[pos+4 : pos+4+n]})
		pos += 4 + n
	}
	return p, nil
}

// CFGAddr builds an address attribute: INTERNAL_IP4_ADDRESS or _DNS (4
// octets), INTERNAL_IP6_DNS (16 octets), INTERNAL_IP6_ADDRESS (16 octets
// and the prefix length, 128 for a host). The unspecified address makes
// an empty value: a request for any.
func CFGAddr(t CFGAttrType, a netip.Addr) CFGAttr {
	if !a.IsValid() || a.IsUnspecified() {
		return CFGAttr{Type: t}
	}
	v := a.Unmap().AsSlice()
	if t == InternalIP6Address {
		v = append(v, 128)
	}
	return CFGAttr{Type: t, Value: v}
}

// Addr reads an address attribute (see CFGAddr); an empty value is the
// unspecified address of the attribute's family. A value of the wrong
// size, or an address attribute of a family it is not, is an error.
func (a CFGAttr) Addr() (netip.Addr, error) {
	switch a.Type {
	case InternalIP4Address, InternalIP4DNS, InternalIP4Netmask:
		switch len(a.Value) {
		case 0:
			return netip.IPv4Unspecified(), nil
		case 4:
			return netip.AddrFrom4([4]byte(a.Value)), nil
		}
	case InternalIP6Address:
		switch len(a.Value) {
		case 0:
			return netip.IPv6Unspecified(), nil
		case 17:
			return netip.AddrFrom16([16]byte(a.Value[:16])), nil
		}
	case InternalIP6DNS:
		switch len(a.Value) {
		case 0:
			return netip.IPv6Unspecified(), nil
		case 16:
			return netip.AddrFrom16([16]byte(a.Value)), nil
		}
	default:
		return netip.Addr{}, fmt.Errorf("%v is not an address attribute", a.Type)
	}
	return netip.Addr{}, fmt.Errorf("%v of %d bytes", a.Type, len(a.Value))
}

func (p *CP) String() string {
	s := p.CFGType.String()
	for _, a := range p.Attrs {
		if ad, err := a.Addr(); err == nil && len(a.Value) > 0 {
			s += fmt.Sprintf(" %v=%s", a.Type, ad)
		} else {
			s += fmt.Sprintf(" %v(%d)", a.Type, len(a.Value))
		}
	}
	return s
}
