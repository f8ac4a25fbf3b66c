package ike

import (
	"net/netip"
	"testing"

	"github.com/keyplane/keyplane/ike/message"
)

// FuzzDatagram feeds arbitrary datagrams to an engine as if a peer sent
// them, on the plain and the NAT-T socket: nothing may panic, and garbage
// must not leave IKE SAs behind beyond half-open ones.
func FuzzDatagram(f *testing.F) {
	ke := make([]byte, 32)
	ke[0] = 9
	init := &message.Message{Header: message.Header{SPIi: 0x1122334455667788, Exchange: message.IKE_SA_INIT, Initiator: true},
		Payloads: []message.Payload{
			&message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtocolIKE, Transforms: []message.Transform{
				message.EncrTransform(message.EncrAESGCM16, 128), message.PRFTransform(message.PRFHMACSHA2256), message.KETransform(message.DHCurve25519)}}}},
			&message.KE{Group: message.DHCurve25519, Data: ke},
			&message.Nonce{Data: make([]byte, 32)},
			&message.Notify{NotifyType: message.COOKIE, Data: []byte{1, 2, 3}},
		}}
	b, _ := init.Encode()
	f.Add(b, false)
	f.Add(append([]byte{0, 0, 0, 0}, b...), true)
	bad := append([]byte(nil), b...)
	bad[18] = byte(message.IKE_AUTH)
	f.Add(bad, false)
	f.Add([]byte{0xff}, true)
	sa, _ := pairSides(f)
	cfg := sa.config(f, "a")
	p := newPeer(f, "a", cfg)
	var plain, nat *sock
	for _, s := range p.e.sockets {
		if s.nat {
			nat = s
		} else {
			plain = s
		}
	}
	remote := netip.MustParseAddrPort("127.0.0.1:9")
	f.Fuzz(func(t *testing.T, data []byte, onNAT bool) {
		s := plain
		if onNAT {
			s = nat
		}
		d := append([]byte(nil), data...)
		if err := p.e.call(t.Context(), func() {
			p.e.handleDatagram(s, d, s.bound, remote)
			for _, x := range p.e.sas {
				if x.state != ikeHalfOpen {
					t.Fatalf("garbage left an IKE SA in state %s", x.state)
				}
				x.destroy("fuzz")
			}
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzTSRange checks the selector arithmetic on arbitrary ranges: an
// intersection lies in both operands, and prefixes cover exactly the range.
func FuzzTSRange(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0}, []byte{10, 0, 255, 255}, []byte{10, 0, 3, 7}, []byte{10, 1, 0, 0}, uint16(0), uint16(65535))
	f.Add([]byte{0, 0, 0, 1}, []byte{255, 255, 255, 254}, []byte{0, 0, 0, 0}, []byte{255, 255, 255, 255}, uint16(80), uint16(80))
	f.Fuzz(func(t *testing.T, a, b, c, d []byte, sp, ep uint16) {
		mk := func(x, y []byte, sp, ep uint16) (tsRange, bool) {
			s, ok1 := netip.AddrFromSlice(x)
			e, ok2 := netip.AddrFromSlice(y)
			if !ok1 || !ok2 || !s.Is4() || !e.Is4() {
				return tsRange{}, false
			}
			return fromMessageTS(message.TrafficSelector{Type: message.TSIPv4AddrRange, StartPort: sp, EndPort: ep, Start: s, End: e})
		}
		r1, ok1 := mk(a, b, sp, ep)
		r2, ok2 := mk(c, d, 0, 65535)
		if !ok1 || !ok2 {
			return
		}
		if x, ok := intersect(r1, r2); ok && (!x.within(r1) || !x.within(r2)) {
			t.Fatalf("intersection %v not within %v and %v", x, r1, r2)
		}
		ps := r1.prefixes()
		if len(ps) == 0 || ps[0].Addr() != r1.start || lastAddr(ps[len(ps)-1]) != r1.end {
			t.Fatalf("prefixes %v do not span %v", ps, r1)
		}
		for i := 1; i < len(ps); i++ {
			if lastAddr(ps[i-1]).Next() != ps[i].Addr() {
				t.Fatalf("prefixes %v leave a gap", ps)
			}
		}
	})
}
