package message

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Payload is one IKEv2 payload. The concrete types are *SA, *KE, *Nonce,
// *ID, *Cert, *CertReq, *Auth, *TS, *Notify, *Delete, *VendorID,
// *CP, *Encrypted, *EncryptedFragment and *Unknown.
type Payload interface {
	// Type is the payload type that announces this payload in the chain.
	Type() PayloadType
	// appendBody appends the payload body (after the generic header).
	appendBody(b []byte) ([]byte, error)
}

const genericHeaderLen = 4

// KE is the Key Exchange payload (RFC 7296 §3.4).
type KE struct {
	Group DHGroup
	Data  []byte
}

func (*KE) Type() PayloadType { return PayloadKE }

func (p *KE) appendBody(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, uint16(p.Group))
	b = append(b, 0, 0)
	return append(b, p.Data...), nil
}

func decodeKE(body []byte, off int) (*KE, error) {
	if len(body) < 4 {
		return nil, perr(off, PayloadKE, ErrTruncated, "KE body is %d bytes, need at least 4", len(body))
	}
	return &KE{Group: DHGroup(binary.BigEndian.Uint16(body)), Data: body[4:]}, nil
}

// Nonce limits (RFC 7296 §3.9).
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Nonce is the Ni or Nr payload (RFC 7296 §3.9).
type Nonce struct {
	Data []byte
}

func (*Nonce) Type() PayloadType { return PayloadNonce }

func (p *Nonce) appendBody(b []byte) ([]byte, error) {
	if len(p.Data) < MinNonceLen || len(p.Data) > MaxNonceLen {
		return nil, eerr(PayloadNonce, "nonce of %d bytes; RFC 7296 allows %d to %d", len(p.Data), MinNonceLen, MaxNonceLen)
	}
	return append(b, p.Data...), nil
}

func decodeNonce(body []byte, off int) (*Nonce, error) {
	if len(body) < MinNonceLen || len(body) > MaxNonceLen {
		return nil, perr(off, PayloadNonce, ErrInvalidSyntax, "nonce of %d bytes; RFC 7296 allows %d to %d", len(body), MinNonceLen, MaxNonceLen)
	}
	return &Nonce{Data: body}, nil
}

// ID is the IDi or IDr payload (RFC 7296 §3.5).
type ID struct {
	// Responder selects IDr; false is IDi.
	Responder bool
	IDType    IDType
	Data      []byte

	raw []byte // the body as received
}

func (p *ID) Type() PayloadType {
	if p.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}

// Body returns the payload body without the generic header: ID Type,
// three reserved zero octets, and the data. This is RestOfInitIDPayload or
// RestOfRespIDPayload of the AUTH computation (RFC 7296 §2.15). For a
// received payload it is what was received, reserved octets included.
func (p *ID) Body() []byte {
	if len(p.raw) >= 4 && p.raw[0] == byte(p.IDType) && bytes.Equal(p.raw[4:], p.Data) {
		return p.raw
	}
	b, _ := p.appendBody(nil)
	return b
}

func (p *ID) appendBody(b []byte) ([]byte, error) {
	if err := checkIDData(p.IDType, p.Data); err != nil {
		return nil, eerr(p.Type(), "%s", err)
	}
	b = append(b, byte(p.IDType), 0, 0, 0)
	return append(b, p.Data...), nil
}

func checkIDData(t IDType, d []byte) error {
	switch t {
	case IDIPv4Addr:
		if len(d) != 4 {
			return fmt.Errorf("%v with %d bytes of data, need 4", t, len(d))
		}
	case IDIPv6Addr:
		if len(d) != 16 {
			return fmt.Errorf("%v with %d bytes of data, need 16", t, len(d))
		}
	}
	return nil
}

// Addr returns the address of an ID_IPV4_ADDR or ID_IPV6_ADDR identity.
func (p *ID) Addr() (netip.Addr, bool) {
	switch {
	case p.IDType == IDIPv4Addr && len(p.Data) == 4:
		return netip.AddrFrom4([4]byte(p.Data)), true
	case p.IDType == IDIPv6Addr && len(p.Data) == 16:
		return netip.AddrFrom16([16]byte(p.Data)), true
	}
	return netip.Addr{}, false
}

// String formats the identity as strongSwan and libreswan print it.
func (p *ID) String() string {
	switch p.IDType {
	case IDIPv4Addr, IDIPv6Addr:
		if a, ok := p.Addr(); ok {
			return a.String()
		}
	case IDFQDN, IDRFC822Addr:
		return string(p.Data)
	}
	return fmt.Sprintf("%v:%x", p.IDType, p.Data)
}

// IDFromAddr returns the IPv4 or IPv6 address identity of a.
func IDFromAddr(a netip.Addr, responder bool) *ID {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return &ID{Responder: responder, IDType: IDIPv4Addr, Data: b[:]}
	}
	b := a.As16()
	return &ID{Responder: responder, IDType: IDIPv6Addr, Data: b[:]}
}

func decodeID(t PayloadType, body []byte, off int) (*ID, error) {
	if len(body) < 4 {
		return nil, perr(off, t, ErrTruncated, "ID body is %d bytes, need at least 4", len(body))
	}
	p := &ID{Responder: t == PayloadIDr, IDType: IDType(body[0]), Data: body[4:], raw: body}
	if err := checkIDData(p.IDType, p.Data); err != nil {
		return nil, perr(off+4, t, ErrInvalidSyntax, "%s", err)
	}
	return p, nil
}

// Auth is the Authentication payload (RFC 7296 §3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

func (*Auth) Type() PayloadType { return PayloadAUTH }

func (p *Auth) appendBody(b []byte) ([]byte, error) {
	b = append(b, byte(p.Method), 0, 0, 0)
	return append(b, p.Data...), nil
}

func decodeAuth(body []byte, off int) (*Auth, error) {
	if len(body) < 4 {
		return nil, perr(off, PayloadAUTH, ErrTruncated, "AUTH body is %d bytes, need at least 4", len(body))
	}
	if len(body) == 4 {
		return nil, perr(off+4, PayloadAUTH, ErrInvalidSyntax, "AUTH payload without authentication data")
	}
	return &Auth{Method: AuthMethod(body[0]), Data: body[4:]}, nil
}

// Notify is the Notify payload (RFC 7296 §3.10).
type Notify struct {
	Protocol   ProtocolID
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

func (*Notify) Type() PayloadType { return PayloadNotify }

func (p *Notify) String() string {
	if len(p.SPI) > 0 {
		return fmt.Sprintf("N(%v, %v SPI %x, %d bytes)", p.NotifyType, p.Protocol, p.SPI, len(p.Data))
	}
	return fmt.Sprintf("N(%v, %d bytes)", p.NotifyType, len(p.Data))
}

func (p *Notify) appendBody(b []byte) ([]byte, error) {
	if len(p.SPI) > 255 {
		return nil, eerr(PayloadNotify, "SPI of %d bytes", len(p.SPI))
	}
	b = append(b, byte(p.Protocol), byte(len(p.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(p.NotifyType))
	b = append(b, p.SPI...)
	return append(b, p.Data...), nil
}

func decodeNotify(body []byte, off int) (*Notify, error) {
	if len(body) < 4 {
		return nil, perr(off, PayloadNotify, ErrTruncated, "Notify body is %d bytes, need at least 4", len(body))
	}
	spiSize := int(body[1])
	if 4+spiSize > len(body) {
		return nil, perr(off+1, PayloadNotify, ErrTruncated, "SPI size %d but only %d bytes follow", spiSize, len(body)-4)
	}
	return &Notify{
		Protocol:   ProtocolID(body[0]),
		NotifyType: NotifyType(binary.BigEndian.Uint16(body[2:])),
		SPI:        body[4 : 4+spiSize],
		Data:       body[4+spiSize:],
	}, nil
}

// Delete is the Delete payload (RFC 7296 §3.11). For ProtocolIKE it carries
// no SPIs (the IKE SA of the message is deleted); for ProtocolAH and
// ProtocolESP it lists 4-octet SPIs, of the SAs inbound to the sender.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

func (*Delete) Type() PayloadType { return PayloadDelete }

func (p *Delete) appendBody(b []byte) ([]byte, error) {
	switch p.Protocol {
	case ProtocolIKE:
		if len(p.SPIs) != 0 {
			return nil, eerr(PayloadDelete, "IKE delete with %d SPIs", len(p.SPIs))
		}
		return append(b, byte(ProtocolIKE), 0, 0, 0), nil
	case ProtocolAH, ProtocolESP:
		if len(p.SPIs) == 0 || len(p.SPIs) > 0xffff {
			return nil, eerr(PayloadDelete, "%v delete with %d SPIs", p.Protocol, len(p.SPIs))
		}
		b = append(b, byte(p.Protocol), 4)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.SPIs)))
		for _, s := range p.SPIs {
			b = binary.BigEndian.AppendUint32(b, s)
		}
		return b, nil
	}
	return nil, eerr(PayloadDelete, "protocol %v", p.Protocol)
}

func decodeDelete(body []byte, off int) (*Delete, error) {
	if len(body) < 4 {
		return nil, perr(off, PayloadDelete, ErrTruncated, "Delete body is %d bytes, need at least 4", len(body))
	}
	p := &Delete{Protocol: ProtocolID(body[0])}
	spiSize, n := int(body[1]), int(binary.BigEndian.Uint16(body[2:]))
	switch p.Protocol {
	case ProtocolIKE:
		if spiSize != 0 || n != 0 {
			return nil, perr(off+1, PayloadDelete, ErrInvalidSyntax, "IKE delete with SPI size %d and %d SPIs, need 0 and 0", spiSize, n)
		}
	case ProtocolAH, ProtocolESP:
		if spiSize != 4 {
			return nil, perr(off+1, PayloadDelete, ErrInvalidSyntax, "%v delete with SPI size %d, need 4", p.Protocol, spiSize)
		}
		if n == 0 {
			return nil, perr(off+2, PayloadDelete, ErrInvalidSyntax, "%v delete without SPIs", p.Protocol)
		}
	default:
		return nil, perr(off, PayloadDelete, ErrInvalidSyntax, "delete for protocol %v", p.Protocol)
	}
	rest := body[4:]
	switch {
	case len(rest) < n*spiSize:
		return nil, perr(off+4, PayloadDelete, ErrTruncated, "%d SPIs of %d bytes need %d bytes, have %d", n, spiSize, n*spiSize, len(rest))
	case len(rest) > n*spiSize:
		return nil, perr(off+4+n*spiSize, PayloadDelete, ErrInvalidSyntax, "%d bytes after the %d SPIs", len(rest)-n*spiSize, n)
	}
	for i := range n {
		p.SPIs = append(p.SPIs, binary.BigEndian.Uint32(rest[4*i:]))
	}
	return p, nil
}

// VendorID is the Vendor ID payload (RFC 7296 §3.12).
type VendorID struct {
	Data []byte
}

func (*VendorID) Type() PayloadType { return PayloadVendorID }

func (p *VendorID) appendBody(b []byte) ([]byte, error) { return append(b, p.Data...), nil }

// Encrypted is the Encrypted and Authenticated payload, SK (RFC 7296 §3.14),
// as received: Message.Decrypt opens it.
type Encrypted struct {
	// NextPayload is the type of the first payload inside.
	NextPayload PayloadType
	// Data is IV | ciphertext | ICV.
	Data []byte
}

func (*Encrypted) Type() PayloadType { return PayloadSK }

func (p *Encrypted) appendBody(b []byte) ([]byte, error) { return append(b, p.Data...), nil }

// EncryptedFragment is the Encrypted Fragment payload, SKF (RFC 7383 §2.5),
// as received: Message.OpenFragment opens it.
type EncryptedFragment struct {
	// NextPayload is the type of the first inner payload in fragment 1, and
	// PayloadNone in the others.
	NextPayload PayloadType
	Number      uint16
	Total       uint16
	// Data is IV | ciphertext | ICV.
	Data []byte
}

func (*EncryptedFragment) Type() PayloadType { return PayloadSKF }

func (p *EncryptedFragment) appendBody(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, p.Number)
	b = binary.BigEndian.AppendUint16(b, p.Total)
	return append(b, p.Data...), nil
}

func decodeSKF(next PayloadType, body []byte, off int) (*EncryptedFragment, error) {
	if len(body) < 4 {
		return nil, perr(off, PayloadSKF, ErrTruncated, "SKF body is %d bytes, need at least 4", len(body))
	}
	p := &EncryptedFragment{
		NextPayload: next,
		Number:      binary.BigEndian.Uint16(body),
		Total:       binary.BigEndian.Uint16(body[2:]),
		Data:        body[4:],
	}
	if p.Number == 0 || p.Total == 0 || p.Number > p.Total {
		return nil, perr(off, PayloadSKF, ErrInvalidSyntax, "fragment %d of %d", p.Number, p.Total)
	}
	return p, nil
}

// Unknown is a payload this package does not model: a known type it keeps
// opaque (CP, EAP) or an unknown non-critical type.
type Unknown struct {
	PayloadType PayloadType
	// Critical is the payload's Critical bit, sent as given.
	Critical bool
	Body     []byte
}

func (p *Unknown) Type() PayloadType { return p.PayloadType }

func (p *Unknown) appendBody(b []byte) ([]byte, error) { return append(b, p.Body...), nil }
