package message

import (
	"encoding/binary"
	"errors"
)

// ErrNoIntAuthData is returned by IntAuthOctets for a message that is
// neither built to be sent nor parsed and opened with Decrypt.
var ErrNoIntAuthData = errors.New("ikev2 message: no IKE_INTERMEDIATE authentication data (parse and Decrypt the message first)")

// IntAuthOctets returns IntAuth_A | IntAuth_P of an IKE_INTERMEDIATE
// message (RFC 9242 §3.3.2): the octets from the IKE header to the end of
// the Encrypted payload header, with the header's Length and the Encrypted
// payload's Payload Length adjusted to count no IV, padding, Pad Length or
// ICV, followed by the inner payloads in plaintext. The caller feeds them
// to the PRF (ikecrypto.IntAuth).
//
// For a message built to be sent, all of m.Payloads are the inner payloads
// (as EncodeEncrypted and EncodeFragments send them); the result does not
// depend on the cipher or on fragmentation. For a parsed message, Decrypt
// must have opened it: the result uses the octets received. A message that
// arrived in fragments is authenticated with IntAuthOctetsOfFragments.
func (m *Message) IntAuthOctets() ([]byte, error) {
	if m.reassembled {
		return IntAuthOctetsOfFragments(m.Header, m.first, m.plain), nil
	}
	if m.raw == nil {
		for _, p := range m.Payloads {
			if p != nil && (p.Type() == PayloadSK || p.Type() == PayloadSKF) {
				return nil, eerr(p.Type(), "an encrypted payload cannot be encrypted again")
			}
		}
		inner, first, err := appendChain(nil, m.Payloads)
		if err != nil {
			return nil, err
		}
		if genericHeaderLen+len(inner) > 0xffff {
			return nil, eerr(PayloadSK, "%d octets of inner payloads do not fit one Encrypted payload", len(inner))
		}
		return intAuthOctets(m.Header.appendHeader(nil, PayloadSK, 0), nil, byte(first), 0, inner), nil
	}
	if !m.Protected || m.plain == nil || m.skOff < HeaderLen {
		return nil, ErrNoIntAuthData
	}
	sk := m.raw[m.skOff:]
	return intAuthOctets(m.raw[:HeaderLen], m.raw[HeaderLen:m.skOff], sk[0], sk[1], m.plain), nil
}

// IntAuthOctetsOfFragments is IntAuthOctets for a message received in
// Encrypted Fragment payloads (RFC 7383) and reassembled: h is the header
// of its fragments, first the Next Payload of fragment 1 (the first inner
// payload) and inner the joined plaintext (Reassembler's output). RFC
// 9242 §3.3.2 computes it as if the message had come unfragmented, in one
// SK payload without unencrypted payloads before it.
func IntAuthOctetsOfFragments(h Header, first PayloadType, inner []byte) []byte {
	return intAuthOctets(h.appendHeader(nil, PayloadSK, 0), nil, byte(first), 0, inner)
}

// intAuthOctets builds A | P from the IKE header hdr (as sent or received;
// a fragment's Next Payload, SKF, has been replaced by SK), the unencrypted
// payloads, the Encrypted payload header's first two octets and the inner
// payloads, setting the two lengths RFC 9242 adjusts.
func intAuthOctets(hdr, unencrypted []byte, skNext, skFlags byte, inner []byte) []byte {
	out := make([]byte, 0, HeaderLen+len(unencrypted)+genericHeaderLen+len(inner))
	out = append(out, hdr[:HeaderLen]...)
	total := HeaderLen + len(unencrypted) + genericHeaderLen + len(inner)
	binary.BigEndian.PutUint32(out[24:], uint32(total))
	out = append(out, unencrypted...)
	out = append(out, skNext, skFlags)
	out = binary.BigEndian.AppendUint16(out, uint16(genericHeaderLen+len(inner)))
	return append(out, inner...)
}
