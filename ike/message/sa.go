package message

import (
	"encoding/binary"
	"fmt"
	"iter"
	"strings"
)

// SA is the Security Association payload (RFC 7296 §3.3).
type SA struct {
	Proposals []Proposal
}

func (*SA) Type() PayloadType { return PayloadSA }

// Proposal is one proposal substructure (RFC 7296 §3.3.1). Decoding does not
// check proposal numbering: a request numbers its proposals 1, 2, ..., and a
// response repeats the number of the one chosen.
type Proposal struct {
	Num      uint8
	Protocol ProtocolID
	// SPI is empty in an IKE_SA_INIT proposal, 8 octets for an IKE SA being
	// rekeyed, 4 octets for AH and ESP.
	SPI        []byte
	Transforms []Transform
}

// Transform is one transform substructure (RFC 7296 §3.3.2).
type Transform struct {
	Type TransformType
	ID   TransformID
	// KeyLength is the Key Length attribute in bits, 0 if absent.
	KeyLength uint16
	// Attributes are the other attributes, in order.
	Attributes []Attribute
}

// Attribute is a transform attribute other than Key Length (RFC 7296
// §3.3.5). A TV attribute has a 2-octet Value.
type Attribute struct {
	Type  AttributeType
	TV    bool
	Value []byte
}

// Transform constructors.

func EncrTransform(id EncrID, keyBits uint16) Transform {
	return Transform{Type: TransformENCR, ID: TransformID(id), KeyLength: keyBits}
}
func PRFTransform(id PRFID) Transform { return Transform{Type: TransformPRF, ID: TransformID(id)} }
func IntegTransform(id IntegID) Transform {
	return Transform{Type: TransformINTEG, ID: TransformID(id)}
}
func KETransform(g DHGroup) Transform { return Transform{Type: TransformKE, ID: TransformID(g)} }
func ESNTransform(e ESNID) Transform  { return Transform{Type: TransformESN, ID: TransformID(e)} }

// AddKETransform is the ADDKEn transform (n = 1..7) for method g; DHNone
// makes the additional key exchange optional (RFC 9370 §2.2.1).
func AddKETransform(n int, g DHGroup) Transform {
	return Transform{Type: AddKE(n), ID: TransformID(g)}
}

// String formats the transform as in logs, e.g. "ENCR_AES_GCM_16/256".
func (t Transform) String() string {
	var s string
	switch t.Type {
	case TransformENCR:
		s = EncrID(t.ID).String()
	case TransformPRF:
		s = PRFID(t.ID).String()
	case TransformINTEG:
		s = IntegID(t.ID).String()
	case TransformKE:
		s = DHGroup(t.ID).String()
	case TransformESN:
		s = ESNID(t.ID).String()
	case TransformADDKE1, TransformADDKE1 + 1, TransformADDKE1 + 2, TransformADDKE1 + 3,
		TransformADDKE1 + 4, TransformADDKE1 + 5, TransformADDKE7:
		s = t.Type.String() + ":" + DHGroup(t.ID).String()
	default:
		s = fmt.Sprintf("%v:%d", t.Type, t.ID)
	}
	if t.KeyLength != 0 {
		s += fmt.Sprintf("/%d", t.KeyLength)
	}
	return s
}

// Equal reports whether t and u are the same transform with the same
// attributes.
func (t Transform) Equal(u Transform) bool {
	if t.Type != u.Type || t.ID != u.ID || t.KeyLength != u.KeyLength || len(t.Attributes) != len(u.Attributes) {
		return false
	}
	for i, a := range t.Attributes {
		b := u.Attributes[i]
		if a.Type != b.Type || a.TV != b.TV || string(a.Value) != string(b.Value) {
			return false
		}
	}
	return true
}

// Of yields the transforms of type t, in order, in place.
func (p *Proposal) Of(t TransformType) iter.Seq[Transform] {
	return func(yield func(Transform) bool) {
		for _, tr := range p.Transforms {
			if tr.Type == t && !yield(tr) {
				return
			}
		}
	}
}

func (p Proposal) String() string {
	parts := make([]string, 0, len(p.Transforms))
	for _, t := range p.Transforms {
		parts = append(parts, t.String())
	}
	spi := ""
	if len(p.SPI) > 0 {
		spi = fmt.Sprintf(" SPI %x", p.SPI)
	}
	return fmt.Sprintf("#%d %v%s: %s", p.Num, p.Protocol, spi, strings.Join(parts, ", "))
}

const (
	lastSubstructMore = 2 // "more proposals follow"
	lastTransformMore = 3 // "more transforms follow"
	proposalHdrLen    = 8
	transformHdrLen   = 8
	attrFormatTV      = 0x8000
)

func (p *SA) appendBody(b []byte) ([]byte, error) {
	if len(p.Proposals) == 0 {
		return nil, eerr(PayloadSA, "no proposals")
	}
	for i := range p.Proposals {
		var err error
		b, err = p.Proposals[i].append(b, i == len(p.Proposals)-1)
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (p *Proposal) append(b []byte, last bool) ([]byte, error) {
	if len(p.SPI) > 255 || len(p.Transforms) > 255 {
		return nil, eerr(PayloadSA, "proposal %d: SPI of %d bytes, %d transforms", p.Num, len(p.SPI), len(p.Transforms))
	}
	start := len(b)
	more := byte(lastSubstructMore)
	if last {
		more = 0
	}
	b = append(b, more, 0, 0, 0, p.Num, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
	b = append(b, p.SPI...)
	for i := range p.Transforms { // by index: a copy would escape (its errors format it) and cost an allocation per transform
		var err error
		if b, err = p.Transforms[i].append(b, i == len(p.Transforms)-1); err != nil {
			return nil, err
		}
	}
	n := len(b) - start
	if n > 0xffff {
		return nil, eerr(PayloadSA, "proposal %d is %d bytes long", p.Num, n)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	return b, nil
}

func (t *Transform) append(b []byte, last bool) ([]byte, error) {
	start := len(b)
	more := byte(lastTransformMore)
	if last {
		more = 0
	}
	b = append(b, more, 0, 0, 0, byte(t.Type), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(t.ID))
	if t.KeyLength != 0 {
		b = binary.BigEndian.AppendUint16(b, attrFormatTV|uint16(AttrKeyLength))
		b = binary.BigEndian.AppendUint16(b, t.KeyLength)
	}
	for _, a := range t.Attributes {
		if a.Type == AttrKeyLength || a.Type&attrFormatTV != 0 {
			return nil, eerr(PayloadSA, "transform %v: attribute type %d", t, a.Type)
		}
		if a.TV {
			if len(a.Value) != 2 {
				return nil, eerr(PayloadSA, "transform %v: TV attribute %d with %d-byte value", t, a.Type, len(a.Value))
			}
			b = binary.BigEndian.AppendUint16(b, attrFormatTV|uint16(a.Type))
			b = append(b, a.Value...)
			continue
		}
		if len(a.Value) > 0xffff {
			return nil, eerr(PayloadSA, "transform %v: attribute %d of %d bytes", t, a.Type, len(a.Value))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(a.Type))
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	n := len(b) - start
	if n > 0xffff {
		return nil, eerr(PayloadSA, "transform %v is %d bytes long", t, n)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	return b, nil
}

func decodeSA(body []byte, off int) (*SA, error) {
	sa := &SA{}
	if len(body) == 0 {
		return nil, perr(off, PayloadSA, ErrInvalidSyntax, "SA payload without proposals")
	}
	pos := 0
	for {
		rest := body[pos:]
		o := off + pos
		if len(rest) < proposalHdrLen {
			return nil, perr(o, PayloadSA, ErrTruncated, "proposal header needs %d bytes, have %d", proposalHdrLen, len(rest))
		}
		more := rest[0]
		plen := int(binary.BigEndian.Uint16(rest[2:]))
		if more != 0 && more != lastSubstructMore {
			return nil, perr(o, PayloadSA, ErrInvalidSyntax, "proposal Last Substruc is %d, need 0 or 2", more)
		}
		if plen < proposalHdrLen {
			return nil, perr(o+2, PayloadSA, ErrInvalidSyntax, "proposal length %d", plen)
		}
		if plen > len(rest) {
			return nil, perr(o+2, PayloadSA, ErrTruncated, "proposal length %d, %d bytes left in the SA payload", plen, len(rest))
		}
		p, err := decodeProposal(rest[:plen], o)
		if err != nil {
			return nil, err
		}
		sa.Proposals = append(sa.Proposals, p)
		pos += plen
		if more == 0 {
			if pos != len(body) {
				return nil, perr(off+pos, PayloadSA, ErrInvalidSyntax, "%d bytes after the last proposal", len(body)-pos)
			}
			return sa, nil
		}
		if pos == len(body) {
			return nil, perr(o, PayloadSA, ErrInvalidSyntax, "proposal %d says more follow, but the SA payload ends", p.Num)
		}
	}
}

func decodeProposal(b []byte, off int) (Proposal, error) {
	p := Proposal{Num: b[4], Protocol: ProtocolID(b[5])}
	spiSize, nt := int(b[6]), int(b[7])
	switch p.Protocol {
	case ProtocolIKE:
		if spiSize != 0 && spiSize != 8 {
			return p, perr(off+6, PayloadSA, ErrInvalidSyntax, "IKE proposal with SPI size %d, need 0 or 8", spiSize)
		}
	case ProtocolAH, ProtocolESP:
		if spiSize != 4 {
			return p, perr(off+6, PayloadSA, ErrInvalidSyntax, "%v proposal with SPI size %d, need 4", p.Protocol, spiSize)
		}
	}
	if proposalHdrLen+spiSize > len(b) {
		return p, perr(off+6, PayloadSA, ErrTruncated, "SPI size %d exceeds the proposal", spiSize)
	}
	if spiSize > 0 {
		p.SPI = b[proposalHdrLen : proposalHdrLen+spiSize]
	}
	pos := proposalHdrLen + spiSize
	if nt == 0 {
		return p, perr(off+7, PayloadSA, ErrInvalidSyntax, "proposal %d has no transforms", p.Num)
	}
	for i := range nt {
		rest := b[pos:]
		o := off + pos
		if len(rest) < transformHdrLen {
			return p, perr(o, PayloadSA, ErrTruncated, "proposal %d announces %d transforms, transform %d needs %d bytes, have %d", p.Num, nt, i+1, transformHdrLen, len(rest))
		}
		more := rest[0]
		tlen := int(binary.BigEndian.Uint16(rest[2:]))
		if more != 0 && more != lastTransformMore {
			return p, perr(o, PayloadSA, ErrInvalidSyntax, "transform Last Substruc is %d, need 0 or 3", more)
		}
		if (more == 0) != (i == nt-1) {
			return p, perr(o, PayloadSA, ErrInvalidSyntax, "transform %d of %d has Last Substruc %d", i+1, nt, more)
		}
		if tlen < transformHdrLen {
			return p, perr(o+2, PayloadSA, ErrInvalidSyntax, "transform length %d", tlen)
		}
		if tlen > len(rest) {
			return p, perr(o+2, PayloadSA, ErrTruncated, "transform length %d, %d bytes left in the proposal", tlen, len(rest))
		}
		t, err := decodeTransform(rest[:tlen], o)
		if err != nil {
			return p, err
		}
		p.Transforms = append(p.Transforms, t)
		pos += tlen
	}
	if pos != len(b) {
		return p, perr(off+pos, PayloadSA, ErrInvalidSyntax, "%d bytes after the %d transforms of proposal %d", len(b)-pos, nt, p.Num)
	}
	return p, nil
}

func decodeTransform(b []byte, off int) (Transform, error) {
	t := Transform{Type: TransformType(b[4]), ID: TransformID(binary.BigEndian.Uint16(b[6:]))}
	pos := transformHdrLen
	haveKeyLen := false
	for pos < len(b) {
		rest := b[pos:]
		o := off + pos
		if len(rest) < 4 {
			return t, perr(o, PayloadSA, ErrTruncated, "attribute header needs 4 bytes, have %d", len(rest))
		}
		at := binary.BigEndian.Uint16(rest)
		typ := AttributeType(at &^ attrFormatTV)
		if at&attrFormatTV != 0 {
			if typ == AttrKeyLength {
				if haveKeyLen {
					return t, perr(o, PayloadSA, ErrInvalidSyntax, "transform %v has two Key Length attributes", t)
				}
				haveKeyLen = true
				t.KeyLength = binary.BigEndian.Uint16(rest[2:])
				if t.KeyLength == 0 {
					return t, perr(o+2, PayloadSA, ErrInvalidSyntax, "transform %v has Key Length 0", t)
				}
			} else {
				t.Attributes = append(t.Attributes, Attribute{Type: typ, TV: true, Value: rest[2:4]})
			}
			pos += 4
			continue
		}
		if typ == AttrKeyLength {
			return t, perr(o, PayloadSA, ErrInvalidSyntax, "Key Length attribute in TLV format")
		}
		alen := int(binary.BigEndian.Uint16(rest[2:]))
		if 4+alen > len(rest) {
			return t, perr(o+2, PayloadSA, ErrTruncated, "attribute %d of %d bytes, %d left in the transform", typ, alen, len(rest)-4)
		}
		t.Attributes = append(t.Attributes, Attribute{Type: typ, Value: rest[4 : 4+alen]})
		pos += 4 + alen
	}
	return t, nil
}
