package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/ikeprobe"
	"github.com/keyplane/keyplane/kernelops"
)

// floodRespConf is a responder that accepts anyone with the key, at its
// defaults otherwise (settings every keyplane version knows, so an older
// binary runs it too: KEYPLANE_TEST_DAEMON_BINARY).
const floodRespConf = `daemon {
	control = %s
	log_level = info
}
connections {
	resp {
		local_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		psk_file = k.psk
		local {
			id = resp.keyplane.test
		}
		remote {
			id = %%any
		}
		children {
			resp-net {
				local_ts = 10.2.0.0/16
				remote_ts = 10.1.0.0/16
			}
		}
	}
}
`

const floodPSK = "the flood test's pre-shared key"

// legitPeer is an initiator at 127.0.0.2 (the flood comes from
// 127.0.0.1), in this process on the nokernel model.
func legitPeer(t *testing.T, port, natPort int) *ike.Engine {
	t.Helper()
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	src := fmt.Sprintf(`daemon {
	retransmit_timeout = 1s
}
connections {
	legit {
		local_addrs = 127.0.0.2
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		psk_env = PSK
		local {
			id = legit.keyplane.test
		}
		remote {
			id = resp.keyplane.test
		}
		children {
			legit-net {
				local_ts = 10.1.0.0/16
				remote_ts = 10.2.0.0/16
			}
		}
	}
}
`, ports[0], ports[1], port, natPort)
	cfg, err := config.Parse("legit.conf", []byte(src), config.Options{Getenv: func(string) (string, bool) { return floodPSK, true }})
	require.NoError(t, err)
	b, err := kernelops.Open(t.Context(), "nokernel", kernelops.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	e, err := ike.New(t.Context(), ike.Options{Backend: b, Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

// The figures for the probes "2,000 IKE_SA_INIT from one IP, COOKIE
// echoed" (no cap) and "1,000 such INITs padded": the real daemon, in a
// process of its own at its default limits, gets 10,000 IKE_SA_INIT
// requests from one address, every COOKIE echoed. It keeps
// block_threshold half-open SAs, its RSS grows by less than 10 MB, and a
// peer at another address keeps establishing meanwhile: each of its
// handshakes is timed.
func TestDaemonInitFlood(t *testing.T) {
	const n = 10000
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "k.psk"), []byte(floodPSK), 0o600))
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	sock := filepath.Join(dir, "kp.sock")
	conf := filepath.Join(dir, "kp.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(floodRespConf, sock, ports[0], ports[1])), 0o644))
	d := startProcDaemonConf(t, conf, sock)
	legit := legitPeer(t, ports[0], ports[1])
	// One handshake first: what the daemon's RSS is with an SA up.
	ctx := context.Background()
	require.NoError(t, legit.Initiate(ctx, "legit-net"))
	require.NoError(t, legit.Terminate(ctx, "legit"))
	time.Sleep(200 * time.Millisecond)
	before := d.rssKB(t)

	fl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer fl.Close()
	done := make(chan ikeprobe.Result, 1)
	start := time.Now()
	go func() {
		res, err := ikeprobe.Flood([]*net.UDPConn{fl}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[0]}, n, time.Second)
		assert.NoError(t, err)
		done <- res
	}()
	var mu sync.Mutex
	var hs []time.Duration
	var failures []error
	var res ikeprobe.Result
	flooding := true
	for flooding {
		t0 := time.Now()
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := legit.Initiate(hctx, "legit-net")
		cancel()
		took := time.Since(t0)
		mu.Lock()
		if err != nil {
			failures = append(failures, err)
		} else {
			hs = append(hs, took)
		}
		mu.Unlock()
		if err == nil {
			require.NoError(t, legit.Terminate(ctx, "legit"))
		}
		select {
		case res = <-done:
			flooding = false
		default:
		}
	}
	floodTook := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	after := d.rssKB(t)
	r, err := d.do(10*time.Second, "ike-list")
	require.NoError(t, err)
	halfOpen := 0
	for _, sa := range r.IKESAs {
		if sa.State == "half-open" {
			halfOpen++
		}
	}
	slices.Sort(hs)
	median, worst := time.Duration(0), time.Duration(0)
	if len(hs) > 0 {
		median, worst = hs[len(hs)/2], hs[len(hs)-1]
	}
	// The flood's lines: those about 127.0.0.1 as a peer (the legitimate
	// peer's handshakes log theirs, 127.0.0.2).
	lines := 0
	for l := range strings.SplitSeq(d.stderr.String(), "\n") {
		if strings.Contains(l, "from=127.0.0.1") || strings.Contains(l, "remote=127.0.0.1:") {
			lines++
		}
	}
	t.Logf("%d IKE_SA_INIT from 127.0.0.1 in %v (COOKIEs echoed: %d, answered in full: %d): %d half-open SAs after; "+
		"RSS %.1f -> %.1f MB (%+.1f MB); a peer at 127.0.0.2 made %d handshakes meanwhile (median %v, slowest %v, %d failed); daemon log: %d lines about the flood",
		res.Sent, floodTook.Round(time.Millisecond), res.Cookies, res.Full, halfOpen,
		float64(before)/1024, float64(after)/1024, float64(after-before)/1024, len(hs), median.Round(time.Microsecond), worst.Round(time.Microsecond), len(failures), lines)
	assert.Equal(t, n, res.Sent)
	assert.Equal(t, config.DefaultBlockThreshold, halfOpen, "half-open SAs from the flooding address")
	assert.Less(t, after-before, 10<<10, "RSS growth, kB")
	assert.Empty(t, failures, "the legitimate peer's handshakes")
	assert.NotEmpty(t, hs)
	assert.Less(t, lines, 20, "log lines about the flood")
	require.NoError(t, d.stop(t))
}
