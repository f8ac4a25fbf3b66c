package message

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the length of the IKE header.
const HeaderLen = 28

// Header flag bits (RFC 7296 §3.1).
const (
	flagInitiator = 0x08
	flagVersion   = 0x10
	flagResponse  = 0x20
)

// Header is the IKE header (RFC 7296 §3.1). SPIs are the 8 octets read as a
// big-endian integer; 0 is the unset responder SPI of an IKE_SA_INIT request.
type Header struct {
	SPIi uint64
	SPIr uint64
	// NextPayload is the type of the first payload. Parse reports it; Encode
	// computes it from the payloads and ignores this field.
	NextPayload PayloadType
	// MajorVersion and MinorVersion; Encode writes 2.0 when both are zero.
	MajorVersion uint8
	MinorVersion uint8
	Exchange     ExchangeType
	// Initiator is the I flag: set by the original initiator of the IKE SA.
	Initiator bool
	// Response is the R flag.
	Response bool
	// HigherVersion is the V flag: the sender can speak a higher major
	// version. keyplane never sets it.
	HigherVersion bool
	MessageID     uint32
	// Length is the message length. Parse reports it; Encode computes it.
	Length uint32
}

func (h Header) String() string {
	dir := "request"
	if h.Response {
		dir = "response"
	}
	role := "responder"
	if h.Initiator {
		role = "initiator"
	}
	return fmt.Sprintf("%v %s #%d from %s, SPIs %016x_i %016x_r", h.Exchange, dir, h.MessageID, role, h.SPIi, h.SPIr)
}

func (h *Header) flags() byte {
	var f byte
	if h.Initiator {
		f |= flagInitiator
	}
	if h.HigherVersion {
		f |= flagVersion
	}
	if h.Response {
		f |= flagResponse
	}
	return f
}

// appendHeader appends h with the given next payload and total length.
func (h *Header) appendHeader(b []byte, next PayloadType, length uint32) []byte {
	major, minor := h.MajorVersion, h.MinorVersion
	if major == 0 && minor == 0 {
		major = 2
	}
	b = binary.BigEndian.AppendUint64(b, h.SPIi)
	b = binary.BigEndian.AppendUint64(b, h.SPIr)
	b = append(b, byte(next), major<<4|minor&0x0f, byte(h.Exchange), h.flags())
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, length)
}

// ParseHeader decodes the IKE header at the start of b, which must be the
// whole message (the UDP payload, less any non-ESP marker). It checks the
// version and that the Length field equals len(b). On ErrInvalidMajorVersion
// it still returns the decoded header, so that the answer can be addressed.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, perr(len(b), PayloadNone, ErrTruncated, "message is %d bytes, shorter than the %d-byte IKE header", len(b), HeaderLen)
	}
	h.SPIi = binary.BigEndian.Uint64(b[0:])
	h.SPIr = binary.BigEndian.Uint64(b[8:])
	h.NextPayload = PayloadType(b[16])
	h.MajorVersion = b[17] >> 4
	h.MinorVersion = b[17] & 0x0f
	h.Exchange = ExchangeType(b[18])
	f := b[19]
	h.Initiator = f&flagInitiator != 0
	h.HigherVersion = f&flagVersion != 0
	h.Response = f&flagResponse != 0
	h.MessageID = binary.BigEndian.Uint32(b[20:])
	h.Length = binary.BigEndian.Uint32(b[24:])
	switch {
	case h.MajorVersion > 2:
		return h, perr(17, PayloadNone, ErrInvalidMajorVersion, "major version %d", h.MajorVersion)
	case h.MajorVersion < 2:
		return h, perr(17, PayloadNone, ErrObsoleteVersion, "major version %d is not IKEv2", h.MajorVersion)
	}
	switch {
	case h.Length < HeaderLen:
		return h, perr(24, PayloadNone, ErrInvalidSyntax, "length field %d is shorter than the header", h.Length)
	case uint64(h.Length) > uint64(len(b)):
		return h, perr(24, PayloadNone, ErrTruncated, "length field %d but the message has %d bytes", h.Length, len(b))
	case uint64(h.Length) < uint64(len(b)):
		return h, perr(24, PayloadNone, ErrInvalidSyntax, "length field %d but the message has %d bytes (trailing data)", h.Length, len(b))
	}
	return h, nil
}
