package ike

import (
	"log/slog"
	"testing"
	"time"
)

// BenchmarkHandshakeSuites measures one whole initiated handshake between
// two engines over loopback UDP on nokernel (IKE_SA_INIT sent to the
// first child installed on both sides; the IKE SA is deleted outside the
// timer), for the four suites issue 15 compares:
//
//	x25519+PSK        aes256gcm16-prfsha256-x25519, pre-shared keys
//	p256+ECDSA        aes256gcm16-prfsha256-ecp256, ECDSA P-256 certificates
//	x25519+RSA-3072   aes256gcm16-prfsha256-x25519, RSA-3072 certificates (RSASSA-PSS)
//	x25519+ML-KEM-768 aes256gcm16-prfsha256-x25519-ke1_mlkem768, pre-shared keys
//
// Certificates come from an intermediate CA (sent along, verified to the
// root). Side by side:
//
//	go test -run '^$' -bench HandshakeSuites -count 8 ./ike > hs.txt
//	benchstat -col /suite hs.txt
func BenchmarkHandshakeSuites(b *testing.B) {
	for _, s := range []struct{ name, kind, ike string }{
		{"x25519+PSK", "", "aes256gcm16-prfsha256-x25519"},
		{"p256+ECDSA", "p256", "aes256gcm16-prfsha256-ecp256"},
		{"x25519+RSA-3072", "rsa3072", "aes256gcm16-prfsha256-x25519"},
		{"x25519+ML-KEM-768", "", "aes256gcm16-prfsha256-x25519-ke1_mlkem768"},
	} {
		b.Run("suite="+s.name, func(b *testing.B) {
			var a, z *peer
			if s.kind == "" {
				sa, sb := pairSides(b)
				sa.proposals, sb.proposals = s.ike, s.ike
				a, z = newPeer(b, "a", sa.config(b, "a"), withLogLevel(slog.LevelWarn)), newPeer(b, "b", sb.config(b, "b"), withLogLevel(slog.LevelWarn))
			} else {
				p := newPKPair(b, s.kind)
				p.a.proposals, p.b.proposals = s.ike, s.ike
				a = newPeer(b, "a", p.a.config(b, p.dir), withLogLevel(slog.LevelWarn))
				z = newPeer(b, "b", p.b.config(b, p.dir), withLogLevel(slog.LevelWarn))
			}
			b.ResetTimer()
			for b.Loop() {
				if err := a.e.Initiate(b.Context(), "a-net"); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := z.e.Terminate(b.Context(), "b"); err != nil {
					b.Fatal(err)
				}
				for len(a.sas(b)) != 0 || len(z.sas(b)) != 0 {
					time.Sleep(time.Millisecond)
				}
				b.StartTimer()
			}
		})
	}
}
