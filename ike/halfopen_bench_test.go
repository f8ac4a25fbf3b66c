package ike

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/keyplane/keyplane/ike/message"
)

// BenchmarkInitRequest: the cost of one IKE_SA_INIT request answered with
// a COOKIE while the engine holds sas established IKE SAs. Counting the
// half-open SAs by a scan of every SA made it grow with sas; the running
// counts keep it flat. Self-contained (no helper newer than the scan), so
// it runs unchanged on the code before the counts for the side-by-side:
//
//	go test -run '^$' -bench InitRequest -count 8 ./ike | tee new.txt
//	benchstat -col /sas new.txt
func BenchmarkInitRequest(b *testing.B) {
	for _, n := range []int{0, 10000, 100000} {
		b.Run(fmt.Sprintf("sas=%d", n), func(b *testing.B) {
			_, sb := pairSides(b)
			sb.daemonExtra = "cookie_threshold = 1"
			p := newPeer(b, "b", sb.config(b, "b"), withLogLevel(slog.LevelError))
			var plain *sock
			var dummies []uint64
			from := netip.MustParseAddrPort("127.0.0.1:9")
			ke := make([]byte, 32)
			ke[0] = 9
			m := &message.Message{Header: message.Header{SPIi: 1 << 62, Exchange: message.IKE_SA_INIT, Initiator: true},
				Payloads: []message.Payload{
					&message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtocolIKE, Transforms: []message.Transform{
						message.EncrTransform(message.EncrAESGCM16, 128), message.PRFTransform(message.PRFHMACSHA2256), message.KETransform(message.DHCurve25519)}}}},
					&message.KE{Group: message.DHCurve25519, Data: ke},
					&message.Nonce{Data: make([]byte, 32)},
				}}
			d, err := m.Encode()
			if err != nil {
				b.Fatal(err)
			}
			if err := p.e.call(b.Context(), func() {
				for _, s := range p.e.sockets {
					if !s.nat {
						plain = s
					}
				}
				// One half-open SA: from now on every request needs a COOKIE.
				p.e.handleDatagram(plain, append([]byte(nil), d...), plain.bound, from)
				for i := range n {
					spi := uint64(1)<<63 | uint64(i)
					p.e.sas[spi] = &ikeSA{e: p.e, state: ikeEstablished, spii: spi ^ 1<<62, spir: spi}
					dummies = append(dummies, spi)
				}
			}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			if err := p.e.call(b.Context(), func() {
				for i := range b.N {
					x := append([]byte(nil), d...)
					binary.BigEndian.PutUint64(x, uint64(2+i)) // a new initiator each time
					p.e.handleDatagram(plain, x, plain.bound, from)
				}
			}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := p.e.call(b.Context(), func() {
				for _, spi := range dummies {
					delete(p.e.sas, spi)
				}
			}); err != nil {
				b.Fatal(err)
			}
		})
	}
}
