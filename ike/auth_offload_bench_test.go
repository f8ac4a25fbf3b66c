package ike

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/testpki"
)

// BenchmarkAuthOffload brings up -bench.tunnels IKE SAs (one child each,
// -bench.inflight at once) between two engines on nokernel over
// loopback, with the IKE_AUTH work on the crypto workers (offload=on, as
// the engine runs) or on the loop (offload=off: authInline, the same
// code without the hand-off), with pre-shared keys and with ECDSA P-256
// certificates (a leaf per tunnel from an intermediate CA, sent along and
// verified to the root). Side by side:
//
//	go test -run '^$' -bench AuthOffload -count 6 ./ike > ao.txt
//	benchstat -col /offload ao.txt
func BenchmarkAuthOffload(b *testing.B) {
	n := min(*benchTunnels, 500)
	for _, auth := range []string{"psk", "p256"} {
		for _, inline := range []bool{false, true} {
			name := fmt.Sprintf("auth=%s/offload=%v", auth, map[bool]string{false: "on", true: "off"}[inline])
			b.Run(name, func(b *testing.B) {
				var ca, cb *config.Config
				if auth == "psk" {
					ca, cb = tunnelConfigs(b, n)
				} else {
					ca, cb = pkTunnelConfigs(b, n, auth)
				}
				old := authInline
				authInline = inline
				defer func() { authInline = old }()
				var cpu time.Duration
				for b.Loop() {
					b.StopTimer()
					a := newPeer(b, "a", ca, withLogLevel(slog.LevelWarn))
					z := newPeer(b, "b", cb, withLogLevel(slog.LevelWarn))
					b.StartTimer()
					c0 := cpuTime()
					err := bringUp(b.Context(), a.e, n, *benchInflight)
					cpu += cpuTime() - c0
					b.StopTimer()
					require.NoError(b, err)
					for _, e := range []*Engine{a.e, z.e} {
						_, kids, err := e.StateCounts(b.Context())
						require.NoError(b, err)
						require.Equal(b, map[ChildState]int{ChildInstalled: n}, kids, "children")
					}
					require.NoError(b, a.e.Close())
					require.NoError(b, z.e.Close())
					b.StartTimer()
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tunnels/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/tunnel")
			})
		}
	}
}

// pkTunnelConfigs is tunnelConfigs with certificates of kind: tunnel i's
// initiator end authenticates as t<i>.a.example.org with its own leaf,
// the responder as b.example.org; each trusts the other's root.
func pkTunnelConfigs(t testing.TB, n int, kind string) (*config.Config, *config.Config) {
	dir := t.TempDir()
	pa, pb := testpki.New(t, kind, "A"), testpki.New(t, kind, "B")
	fb := testpki.WriteEnd(t, dir, "b", pb, pb.Leaf(t, kind, "b.example.org"), pa.Root)
	daemon := "daemon {\n\tcookie_threshold = 0\n\tcookie_threshold_ip = 0\n\tblock_threshold = 0\n\tinit_limit_half_open = 0\n}\n"
	p := freePorts(t, 4)
	var conns, secrets strings.Builder
	for i := range n {
		id := fmt.Sprintf("t%d.a.example.org", i)
		fa := testpki.WriteEnd(t, dir, fmt.Sprintf("t%d", i), pa, pa.Leaf(t, kind, id), pb.Root)
		fmt.Fprintf(&secrets, "\tprivate-t%d {\n\t\tfile = %s\n\t}\n", i, fa.Key)
		fmt.Fprintf(&conns, `
	t%d {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519
		local {
			auth = pubkey
			certs = %s
			id = %s
		}
		remote {
			auth = pubkey
			cacerts = %s
			id = b.example.org
		}
		children {
			t%d-net {
				local_ts = %s/32
				remote_ts = %s/32
				esp_proposals = aes128gcm16
			}
		}
	}
`, i, p[0], p[1], p[2], p[3], fa.Certs, id, fa.CA, i, tunnelAddr(1, i), tunnelAddr(2, i))
	}
	parse := func(name, src string) *config.Config {
		cfg, err := config.Parse(name+".conf", []byte(src), config.Options{})
		require.NoError(t, err)
		return cfg
	}
	a := parse("a", daemon+"secrets {\n"+secrets.String()+"}\nconnections {\n"+conns.String()+"}\n")
	z := parse("b", daemon+fmt.Sprintf(`
secrets {
	private-b {
		file = %s
	}
}
connections {
	b {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519
		local {
			auth = pubkey
			certs = %s
			id = b.example.org
		}
		remote {
			auth = pubkey
			cacerts = %s
		}
		children {
			b-net {
				local_ts = 10.2.0.0/16
				remote_ts = 10.1.0.0/16
				esp_proposals = aes128gcm16
			}
		}
	}
}
`, fb.Key, p[2], p[3], p[0], p[1], fb.Certs, fb.CA))
	return a, z
}
