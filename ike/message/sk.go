package message

import (
	"encoding/binary"
	"errors"
	"sync"
)

// Cipher protects the Encrypted payload (SK, RFC 7296 §3.14) in one
// direction of an IKE SA: SK_ei/SK_ai for what the initiator sends, SK_er/SK_ar
// for what the responder sends. Package ike/ikecrypto implements it for
// AES-GCM (RFC 5282), ChaCha20-Poly1305 (RFC 7634) and AES-CBC with
// HMAC-SHA2 (RFC 7296, RFC 4868).
//
// The ciphertext is as long as the plaintext.
type Cipher interface {
	// IVSize is the length of the IV that precedes the ciphertext.
	IVSize() int
	// BlockSize is the alignment of the plaintext (inner payloads, padding
	// and the Pad Length octet): 16 for AES-CBC, 1 for the AEAD ciphers.
	BlockSize() int
	// ICVSize is the length of the Integrity Checksum Data that ends the
	// payload.
	ICVSize() int
	// Seal appends IV | ciphertext | ICV to dst and returns the result.
	// head is the message from the first octet of the IKE header to the end
	// of the SK (or SKF) payload's header, with every length already final;
	// it is the AAD of an AEAD cipher, and the start of the data covered by
	// the ICV otherwise. plaintext is already padded. dst may be head
	// itself.
	Seal(dst, head, plaintext []byte) ([]byte, error)
	// Open checks the ICV of body = IV | ciphertext | ICV (with head as for
	// Seal) and appends the padded plaintext to dst. Any failure, including
	// a body too short or misaligned, is an authentication failure.
	Open(dst, head, body []byte) ([]byte, error)
}

// plaintexts are EncodeEncrypted's scratch buffers: the plaintext is
// sealed into the message it returns, so the buffer is only needed
// during the call (one allocation less per encrypted message).
var plaintexts = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

const maxPooledPlaintext = 4096

// EncodeEncrypted encodes the message with all of m.Payloads inside one SK
// payload (RFC 7296 §3.14), protected with c. Header.NextPayload and
// Header.Length are computed. The padding is the minimum the block size
// needs, in zero octets.
func (m *Message) EncodeEncrypted(c Cipher) ([]byte, error) {
	for _, p := range m.Payloads {
		if p != nil && (p.Type() == PayloadSK || p.Type() == PayloadSKF) {
			return nil, eerr(p.Type(), "an encrypted payload cannot be encrypted again")
		}
	}
	bp := plaintexts.Get().(*[]byte)
	pt, first, err := appendChain((*bp)[:0], m.Payloads)
	defer func() {
		// The plaintext is wiped (it may carry AUTH and configuration
		// data) and kept for the next message unless it grew large.
		clear(pt)
		if cap(pt) <= maxPooledPlaintext {
			*bp = pt[:0]
			plaintexts.Put(bp)
		}
	}()
	if err != nil {
		return nil, err
	}
	bs := c.BlockSize()
	if bs < 1 || bs > 256 {
		return nil, eerr(PayloadSK, "cipher block size %d", bs)
	}
	pad := (bs - (len(pt)+1)%bs) % bs
	for range pad + 1 {
		pt = append(pt, 0)
	}
	pt[len(pt)-1] = byte(pad)

	skLen := genericHeaderLen + c.IVSize() + len(pt) + c.ICVSize()
	if skLen > 0xffff {
		return nil, eerr(PayloadSK, "SK payload of %d bytes; fragment the message (RFC 7383)", skLen)
	}
	total := HeaderLen + skLen
	out := make([]byte, 0, total)
	out = m.Header.appendHeader(out, PayloadSK, uint32(total))
	out = append(out, byte(first), 0)
	out = binary.BigEndian.AppendUint16(out, uint16(skLen))
	out, err = c.Seal(out, out, pt)
	if err != nil {
		return nil, err
	}
	if len(out) != total {
		return nil, eerr(PayloadSK, "cipher produced %d bytes, expected %d", len(out), total)
	}
	return out, nil
}

// open authenticates and decrypts the SK/SKF payload at m.skOff, whose
// encrypted data starts hdrLen bytes after the payload start, and removes
// the padding.
func (m *Message) open(c Cipher, t PayloadType, hdrLen int) ([]byte, error) {
	head := m.raw[:m.skOff+hdrLen]
	body := m.raw[m.skOff+hdrLen:]
	if len(body) < c.IVSize()+c.ICVSize()+1 {
		return nil, perr(m.skOff, t, ErrIntegrity, "%d bytes of encrypted data, less than IV, ICV and pad length", len(body))
	}
	pt, err := c.Open(nil, head, body)
	if err != nil {
		return nil, &ParseError{Offset: m.skOff, Payload: t, Err: ErrIntegrity, Reason: err.Error()}
	}
	if bs := c.BlockSize(); bs > 0 && len(pt)%bs != 0 {
		return nil, perr(m.skOff, t, ErrInvalidSyntax, "plaintext of %d bytes is not a multiple of the block size %d", len(pt), bs)
	}
	if len(pt) == 0 {
		return nil, perr(m.skOff, t, ErrInvalidSyntax, "empty plaintext, no Pad Length")
	}
	pad := int(pt[len(pt)-1])
	if pad+1 > len(pt) {
		return nil, &ParseError{Offset: len(pt) - 1, Payload: t, InSK: true, Err: ErrInvalidSyntax,
			Reason: "pad length exceeds the plaintext"}
	}
	return pt[:len(pt)-1-pad], nil
}

// ErrNotEncrypted is returned by Decrypt and OpenFragment for a message
// without the payload they open.
var ErrNotEncrypted = errors.New("ikev2 message: no encrypted payload to open")

// Decrypt authenticates and decrypts the SK payload of a parsed message with
// c, and decodes the payloads inside. On a Reassembled message, whose
// fragments were each opened, it does nothing. On success the SK payload in
// m.Payloads is replaced by them and m.Protected is set; on failure m is
// unchanged. A failed integrity check is a *ParseError wrapping ErrIntegrity.
func (m *Message) Decrypt(c Cipher) error {
	if m.reassembled {
		return nil // opened fragment by fragment (Reassembled)
	}
	if m.raw == nil || m.skOff < 0 || len(m.Payloads) == 0 {
		return ErrNotEncrypted
	}
	sk, ok := m.Payloads[len(m.Payloads)-1].(*Encrypted)
	if !ok {
		return ErrNotEncrypted
	}
	pt, err := m.open(c, PayloadSK, genericHeaderLen)
	if err != nil {
		return err
	}
	inner, err := ParsePayloads(sk.NextPayload, pt)
	if err != nil {
		return err
	}
	ps := append(m.Payloads[:len(m.Payloads)-1:len(m.Payloads)-1], inner...)
	m.Payloads = ps
	m.Protected = true
	m.plain = pt
	return nil
}

// OpenFragment authenticates and decrypts the SKF payload of a parsed
// message (RFC 7383) and returns the payload and its plaintext, padding
// removed. The caller collects the fragments of a message ID, joins the
// plaintexts in fragment order and decodes them with ParsePayloads, using
// the NextPayload of fragment 1.
func (m *Message) OpenFragment(c Cipher) (*EncryptedFragment, []byte, error) {
	if m.raw == nil || m.skOff < 0 || len(m.Payloads) == 0 {
		return nil, nil, ErrNotEncrypted
	}
	f, ok := m.Payloads[len(m.Payloads)-1].(*EncryptedFragment)
	if !ok {
		return nil, nil, ErrNotEncrypted
	}
	pt, err := m.open(c, PayloadSKF, genericHeaderLen+4)
	if err != nil {
		return nil, nil, err
	}
	return f, pt, nil
}

// EncodeFragments encodes the message like EncodeEncrypted, but split into
// Encrypted Fragment payloads (RFC 7383) so that no resulting message is
// longer than maxLen octets (the IKE message, without the non-ESP marker).
// A message that fits in one fragment still gets one SKF payload, as RFC 7383
// §2.5 allows once fragmentation was negotiated. All fragments carry m's
// header (same Message ID); fragment 1 names the first inner payload.
func (m *Message) EncodeFragments(c Cipher, maxLen int) ([][]byte, error) {
	for _, p := range m.Payloads {
		if p != nil && (p.Type() == PayloadSK || p.Type() == PayloadSKF) {
			return nil, eerr(p.Type(), "an encrypted payload cannot be encrypted again")
		}
	}
	pt, first, err := appendChain(nil, m.Payloads)
	if err != nil {
		return nil, err
	}
	bs := c.BlockSize()
	if bs < 1 || bs > 256 {
		return nil, eerr(PayloadSKF, "cipher block size %d", bs)
	}
	overhead := HeaderLen + genericHeaderLen + 4 + c.IVSize() + c.ICVSize()
	// Room for one fragment's data, padding and pad length, aligned down.
	room := min(maxLen, 0xffff+HeaderLen) - overhead
	room -= room % bs
	chunk := room - 1 // at least the pad length octet
	if chunk < 1 {
		return nil, eerr(PayloadSKF, "maximum length %d leaves no room for data", maxLen)
	}
	total := max(1, (len(pt)+chunk-1)/chunk)
	if total > 0xffff {
		return nil, eerr(PayloadSKF, "%d fragments", total)
	}
	out := make([][]byte, 0, total)
	for i := range total {
		part := pt[min(i*chunk, len(pt)):min((i+1)*chunk, len(pt))]
		pad := (bs - (len(part)+1)%bs) % bs
		body := make([]byte, len(part), len(part)+pad+1)
		copy(body, part)
		body = append(body, make([]byte, pad+1)...)
		body[len(body)-1] = byte(pad)
		skfLen := genericHeaderLen + 4 + c.IVSize() + len(body) + c.ICVSize()
		msgLen := HeaderLen + skfLen
		next := PayloadNone
		if i == 0 {
			next = first
		}
		b := make([]byte, 0, msgLen)
		b = m.Header.appendHeader(b, PayloadSKF, uint32(msgLen))
		b = append(b, byte(next), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(skfLen))
		b = binary.BigEndian.AppendUint16(b, uint16(i+1))
		b = binary.BigEndian.AppendUint16(b, uint16(total))
		if b, err = c.Seal(b, b, body); err != nil {
			return nil, err
		}
		if len(b) != msgLen || len(b) > maxLen {
			return nil, eerr(PayloadSKF, "fragment %d is %d octets (expected %d, limit %d)", i+1, len(b), msgLen, maxLen)
		}
		out = append(out, b)
	}
	return out, nil
}
