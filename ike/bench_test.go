package ike

import (
	"testing"
	"time"
)

// BenchmarkHandshake measures one initiated handshake between two engines
// over loopback UDP on nokernel: IKE_SA_INIT sent to the first child
// installed on both sides (the IKE SA is deleted outside the timer).
// Compare suites with benchstat; x25519 with AES-GCM is the baseline.
func BenchmarkHandshake(b *testing.B) {
	for _, s := range []struct{ name, ike, esp string }{
		{"gcm128-x25519", "aes128gcm16-prfsha256-x25519", "aes128gcm16"},
		{"cbc256-ecp256", "aes256-sha256-ecp256", "aes256-sha256"},
		{"gcm256-modp2048", "aes256gcm16-prfsha384-modp2048", "aes256gcm16"},
	} {
		b.Run(s.name, func(b *testing.B) {
			sa, sb := pairSides(b)
			sa.proposals, sb.proposals, sa.esp, sb.esp = s.ike, s.ike, s.esp, s.esp
			a := newPeer(b, "a", sa.config(b, "a"))
			z := newPeer(b, "b", sb.config(b, "b"))
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
