package ike

import (
	"log/slog"
	"syscall"
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
			var cpu time.Duration
			b.ResetTimer()
			for b.Loop() {
				c0 := processCPU(b)
				if err := a.e.Initiate(b.Context(), "a-net"); err != nil {
					b.Fatal(err)
				}
				cpu += processCPU(b) - c0
				b.StopTimer()
				if err := z.e.Terminate(b.Context(), "b"); err != nil {
					b.Fatal(err)
				}
				for len(a.sas(b)) != 0 || len(z.sas(b)) != 0 {
					time.Sleep(time.Millisecond)
				}
				b.StartTimer()
			}
			// Both engines' CPU (user and system) while handshaking:
			// steadier than the time on a shared machine.
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/handshake")
		})
	}
}

// processCPU is this process's user and system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
