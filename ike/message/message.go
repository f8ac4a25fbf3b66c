package message

import (
	"encoding/binary"
	"fmt"
	"iter"
	"strings"
)

// Message is an IKEv2 message: the header and the payload chain.
//
// For a message built to be sent, Payloads are the payloads in order; Encode
// sends them in the clear, EncodeEncrypted puts them all inside an SK
// payload. For a parsed message, Payloads are the unencrypted payloads as
// received, an SK or SKF payload last if there was one; Decrypt replaces the
// SK payload by the payloads inside it and sets Protected.
type Message struct {
	Header
	Payloads []Payload
	// Protected is set by Decrypt: the payloads after the unencrypted ones
	// came out of an authenticated SK payload.
	Protected bool

	raw []byte // the message as parsed (a private copy)
	// reassembled: built by Reassembled from opened fragments; first is
	// the first inner payload's type (for IntAuthOctets).
	reassembled bool
	first       PayloadType
	skOff       int    // offset of the SK/SKF generic header in raw, or -1
	plain       []byte // the SK payload's plaintext without padding, after Decrypt
}

// Raw returns the bytes the message was parsed from, for the AUTH
// computation (RealMessage1/2, RFC 7296 §2.15) and retransmission detection.
// It is nil for a message that was not parsed.
func (m *Message) Raw() []byte { return m.raw }

// Find returns the first payload of type t, or nil.
func (m *Message) Find(t PayloadType) Payload {
	for _, p := range m.Payloads {
		if p.Type() == t {
			return p
		}
	}
	return nil
}

// FindAll returns the payloads of type t, in order.
func (m *Message) FindAll(t PayloadType) []Payload {
	var out []Payload
	for _, p := range m.Payloads {
		if p.Type() == t {
			out = append(out, p)
		}
	}
	return out
}

// Notify returns the first notification of type t, or nil.
func (m *Message) Notify(t NotifyType) *Notify {
	for _, p := range m.Payloads {
		if n, ok := p.(*Notify); ok && n.NotifyType == t {
			return n
		}
	}
	return nil
}

// Notifies yields the Notify payloads, in order, in place (no copy:
// the handshake's hot paths walk them).
func (m *Message) Notifies() iter.Seq[*Notify] {
	return func(yield func(*Notify) bool) {
		for _, p := range m.Payloads {
			if n, ok := p.(*Notify); ok && !yield(n) {
				return
			}
		}
	}
}

// maxStringPayloads bounds String: a datagram can carry thousands of
// tiny payloads, and String goes into log lines.
const maxStringPayloads = 32

// String summarizes the message the way IKE daemons log it, e.g.
// "IKE_SA_INIT request #0 ... [ SA KE Nonce N(NAT_DETECTION_SOURCE_IP) ]".
// Past maxStringPayloads payloads the rest are only counted, so the text
// stays short whatever the message holds.
func (m *Message) String() string {
	var sb strings.Builder
	sb.WriteString(m.Header.String())
	sb.WriteString(" [")
	for i, p := range m.Payloads {
		if i == maxStringPayloads {
			fmt.Fprintf(&sb, " ... %d more", len(m.Payloads)-i)
			break
		}
		sb.WriteByte(' ')
		if n, ok := p.(*Notify); ok {
			fmt.Fprintf(&sb, "N(%v)", n.NotifyType)
			continue
		}
		sb.WriteString(p.Type().String())
	}
	sb.WriteString(" ]")
	return sb.String()
}

// Parse decodes a whole message: b is the UDP payload (less the non-ESP
// marker on port 4500). It checks the header, every length, and every payload
// it models; an SK or SKF payload must be last and is left encrypted (see
// Decrypt). Parse keeps a private copy of b: the payloads' byte slices point
// into that copy, never into b.
//
// On failure the error is a *ParseError. For ErrInvalidMajorVersion the
// returned message is non-nil and holds the header, so that an
// INVALID_MAJOR_VERSION answer can be addressed.
func Parse(b []byte) (*Message, error) {
	raw := append([]byte(nil), b...)
	h, err := ParseHeader(raw)
	if err != nil {
		if h.MajorVersion > 2 {
			return &Message{Header: h, raw: raw, skOff: -1}, err
		}
		return nil, err
	}
	m := &Message{Header: h, raw: raw, skOff: -1}
	m.Payloads, m.skOff, err = parseChain(raw[HeaderLen:], HeaderLen, h.NextPayload, false)
	if err != nil {
		return nil, err
	}
	if m.skOff >= 0 {
		m.skOff += HeaderLen
	}
	return m, nil
}

// ParsePayloads decodes a payload chain that came out of an SK payload, or
// of reassembled SKF fragments: first is the inner Next Payload of the SK
// (or of fragment 1), b the plaintext without padding. SK and SKF payloads
// are not allowed in it. Errors have InSK set and offsets into b.
func ParsePayloads(first PayloadType, b []byte) ([]Payload, error) {
	ps, _, err := parseChain(b, 0, first, true)
	return ps, err
}

// parseChain decodes a payload chain in b, which starts at offset base of
// its container. It returns the payloads and the offset in b of an SK/SKF
// payload (-1 if none).
func parseChain(b []byte, base int, next PayloadType, inSK bool) ([]Payload, int, error) {
	var out []Payload
	pos, skOff := 0, -1
	fail := func(e *ParseError) ([]Payload, int, error) {
		e.InSK = inSK
		return nil, -1, e
	}
	for next != PayloadNone {
		rest := b[pos:]
		o := base + pos
		if len(rest) < genericHeaderLen {
			return fail(perr(o, next, ErrTruncated, "payload header needs %d bytes, %d left", genericHeaderLen, len(rest)))
		}
		np := PayloadType(rest[0])
		critical := rest[1]&0x80 != 0
		plen := int(binary.BigEndian.Uint16(rest[2:]))
		if plen < genericHeaderLen {
			return fail(perr(o+2, next, ErrInvalidSyntax, "payload length %d", plen))
		}
		if plen > len(rest) {
			return fail(perr(o+2, next, ErrTruncated, "payload length %d, %d bytes left", plen, len(rest)))
		}
		body := rest[genericHeaderLen:plen]
		bo := o + genericHeaderLen
		var p Payload
		var err error
		switch next {
		case PayloadSK, PayloadSKF:
			if inSK {
				return fail(perr(o, next, ErrInvalidSyntax, "%v payload inside an encrypted payload", next))
			}
			if pos+plen != len(b) {
				return fail(perr(o, next, ErrInvalidSyntax, "%v payload is not the last payload (%d bytes follow)", next, len(b)-pos-plen))
			}
			if next == PayloadSK {
				p = &Encrypted{NextPayload: np, Data: body}
			} else {
				p, err = decodeSKF(np, body, bo)
			}
			skOff = pos
			np = PayloadNone
		case PayloadSA:
			p, err = decodeSA(body, bo)
		case PayloadKE:
			p, err = decodeKE(body, bo)
		case PayloadIDi, PayloadIDr:
			p, err = decodeID(next, body, bo)
		case PayloadAUTH:
			p, err = decodeAuth(body, bo)
		case PayloadCERT:
			p, err = decodeCert(body, bo)
		case PayloadCERTREQ:
			p, err = decodeCertReq(body, bo)
		case PayloadNonce:
			p, err = decodeNonce(body, bo)
		case PayloadNotify:
			p, err = decodeNotify(body, bo)
		case PayloadDelete:
			p, err = decodeDelete(body, bo)
		case PayloadVendorID:
			p = &VendorID{Data: body}
		case PayloadTSi, PayloadTSr:
			p, err = decodeTS(next, body, bo)
		case PayloadCP:
			p, err = decodeCP(body, bo)
		default:
			if critical && !next.Known() {
				return fail(perr(o+1, next, ErrUnsupportedCritical, "payload type %d is not supported and is marked critical", uint8(next)))
			}
			p = &Unknown{PayloadType: next, Critical: critical, Body: body}
		}
		if err != nil {
			return fail(err.(*ParseError))
		}
		out = append(out, p)
		pos += plen
		next = np
	}
	if pos != len(b) {
		return fail(perr(base+pos, PayloadNone, ErrInvalidSyntax, "%d bytes after the last payload", len(b)-pos))
	}
	return out, skOff, nil
}

// Encode encodes the message with its payloads in the clear (IKE_SA_INIT,
// or an unprotected error answer). Header.NextPayload and Header.Length are
// computed. An *Encrypted or *EncryptedFragment payload, if any, must be
// last and is sent as it is (to protect payloads, use EncodeEncrypted).
func (m *Message) Encode() ([]byte, error) {
	b := make([]byte, HeaderLen, 512)
	b, first, err := appendChain(b, m.Payloads)
	if err != nil {
		return nil, err
	}
	if len(b) > 0xffffffff {
		return nil, eerr(PayloadNone, "message of %d bytes", len(b))
	}
	hdr := m.Header.appendHeader(nil, first, uint32(len(b)))
	copy(b, hdr)
	return b, nil
}

// appendChain appends the payloads with their generic headers and returns
// the type of the first one.
func appendChain(b []byte, ps []Payload) ([]byte, PayloadType, error) {
	first := PayloadNone
	prevNext := -1 // index in b of the previous payload's Next Payload octet
	for i, p := range ps {
		if p == nil {
			return nil, 0, eerr(PayloadNone, "nil payload")
		}
		t := p.Type()
		var next, c byte
		switch t {
		case PayloadNone:
			return nil, 0, eerr(t, "payload of type NONE")
		case PayloadSK, PayloadSKF:
			// An already encrypted payload, passed through: it must be
			// last, and its Next Payload names the first inner payload.
			if i != len(ps)-1 {
				return nil, 0, eerr(t, "encrypted payload is not last")
			}
			if sk, ok := p.(*Encrypted); ok {
				next = byte(sk.NextPayload)
			} else if skf, ok := p.(*EncryptedFragment); ok {
				next = byte(skf.NextPayload)
			}
		}
		if prevNext < 0 {
			first = t
		} else {
			b[prevNext] = byte(t)
		}
		start := len(b)
		if u, ok := p.(*Unknown); ok && u.Critical {
			c = 0x80
		}
		b = append(b, next, c, 0, 0)
		var err error
		if b, err = p.appendBody(b); err != nil {
			return nil, 0, err
		}
		n := len(b) - start
		if n > 0xffff {
			return nil, 0, eerr(t, "payload of %d bytes", n)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
		prevNext = start
	}
	return b, first, nil
}
