package ike

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// skfDatagram builds an IKE_AUTH request of the initiator carrying one
// Encrypted Fragment payload with the given fields, sealed with c as a
// genuine peer would (any numbers, any plaintext).
func skfDatagram(c message.Cipher, spii, spir uint64, num, total uint16, next message.PayloadType, body []byte) []byte {
	bs := c.BlockSize()
	pad := (bs - (len(body)+1)%bs) % bs
	pt := append(append(append([]byte(nil), body...), make([]byte, pad)...), byte(pad))
	skfLen := 4 + 4 + c.IVSize() + len(pt) + c.ICVSize()
	total32 := uint32(message.HeaderLen + skfLen)
	h := make([]byte, 0, total32)
	h = binary.BigEndian.AppendUint64(h, spii)
	h = binary.BigEndian.AppendUint64(h, spir)
	h = append(h, byte(message.PayloadSKF), 0x20, byte(message.IKE_AUTH), 0x08)
	h = binary.BigEndian.AppendUint32(h, 1)
	h = binary.BigEndian.AppendUint32(h, total32)
	h = append(h, byte(next), 0)
	h = binary.BigEndian.AppendUint16(h, uint16(skfLen))
	h = binary.BigEndian.AppendUint16(h, num)
	h = binary.BigEndian.AppendUint16(h, total)
	out, err := c.Seal(h, h, pt)
	if err != nil {
		panic(err)
	}
	return out
}

// FuzzFragments feeds authentic fragments — sealed with the IKE SA's real
// keys, so they pass the integrity check — with arbitrary numbers, totals
// and contents to an IKE SA's reassembly: nothing may panic, what is kept
// stays within the reassembly limits, and a completed message decodes.
// Each fuzz input is a list of fragments: number (2 octets), total (2),
// next payload (1), length (1), then that many octets of plaintext.
func FuzzFragments(f *testing.F) {
	frag := func(num, total uint16, next byte, body []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, num)
		b = binary.BigEndian.AppendUint16(b, total)
		return append(append(b, next, byte(len(body))), body...)
	}
	nonce := (&message.Nonce{Data: bytes.Repeat([]byte{7}, 16)})
	whole, _ := (&message.Message{Payloads: []message.Payload{nonce}}).Encode()
	inner := whole[message.HeaderLen:]
	f.Add(append(frag(1, 2, byte(message.PayloadNonce), inner[:10]), frag(2, 2, 0, inner[10:])...))
	f.Add(append(frag(2, 2, 0, inner[10:]), frag(1, 2, byte(message.PayloadNonce), inner[:10])...))
	f.Add(append(append(frag(1, 3, 40, []byte{1, 2}), frag(1, 3, 40, []byte{1, 2})...), frag(1, 2, 40, nil)...))
	f.Add(frag(65535, 65535, 0, []byte{0xff}))
	f.Add(frag(0, 0, 0, nil))

	sa, _ := pairSides(f)
	p := newPeer(f, "a", sa.config(f, "a"))
	suite := ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128, PRF: message.PRFHMACSHA2256, DH: message.DHCurve25519}
	keys, err := ikecrypto.DeriveIKEKeys(suite, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32), 0x1111, 0x2222)
	if err != nil {
		f.Fatal(err)
	}
	peerOut, _, _ := keys.Ciphers(true)
	ourOut, ourIn, _ := keys.Ciphers(false)
	var plain *sock
	for _, s := range p.e.sockets {
		if !s.nat {
			plain = s
		}
	}
	remote := netip.MustParseAddrPort("127.0.0.1:9")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := p.e.call(t.Context(), func() {
			x := &ikeSA{e: p.e, conn: p.e.cfg.Connections[0], spii: 0x1111, spir: 0x2222, state: ikeHalfOpen,
				sock: plain, local: plain.bound, remote: remote, out: ourOut, in: ourIn}
			x.fragAnnounced = true
			x.setupWindow()
			x.w.peerNext = 1
			defer x.dropFragments()
			for n := 0; len(data) >= 6 && n < 100; n++ {
				num, total := binary.BigEndian.Uint16(data), binary.BigEndian.Uint16(data[2:])
				next, l := message.PayloadType(data[4]), int(data[5])
				data = data[6:]
				body := data[:min(l, len(data))]
				data = data[len(body):]
				m, err := message.Parse(skfDatagram(peerOut, 0x1111, 0x2222, num, total, next, body))
				if err != nil {
					continue // Parse refuses it before the engine sees it
				}
				got := x.reassemble(plain, m, plain.bound, remote)
				if got != nil && (!got.Protected || got.MessageID != 1 || got.Exchange != message.IKE_AUTH) {
					t.Fatalf("reassembled %s", got)
				}
				if r := orZero(x.frag).req; r != nil {
					if h, active := r.Active(); active && h.MessageID != 1 {
						t.Fatalf("collecting message %d", h.MessageID)
					}
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
	})
}
