package main

import (
	"context"
	"fmt"
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
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/internal/ikeprobe"
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
	return nokernelPeer(t, "legit.conf", src, floodPSK)
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
	// Half-open SAs of the flooding address only: a handshake of the
	// legitimate peer (127.0.0.2) may still be in flight when listed.
	halfOpen := 0
	var others []string
	for _, sa := range r.IKESAs {
		if sa.State != "half-open" {
			continue
		}
		if strings.HasPrefix(sa.Remote, "127.0.0.1:") {
			halfOpen++
		} else {
			others = append(others, sa.Remote)
		}
	}
	if len(others) > 0 {
		t.Logf("half-open SAs of other peers when listed: %v", others)
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
	checkRSSGrowth(t, after-before)
	assert.Empty(t, failures, "the legitimate peer's handshakes")
	assert.NotEmpty(t, hs)
	assert.Less(t, lines, 20, "log lines about the flood")
	require.NoError(t, d.stop(t))
}

// checkRSSGrowth holds the daemon's RSS growth to 10 MB. Under -race the
// daemon (this test binary) carries the race detector's shadow memory, so
// the bound is checked by the run without it (make host-test has one).
func checkRSSGrowth(t *testing.T, kB int) {
	t.Helper()
	if raceEnabled {
		t.Logf("RSS growth %d kB not checked against 10 MB under -race (shadow memory); make host-test checks it without -race", kB)
		return
	}
	assert.Less(t, kB, 10<<10, "RSS growth, kB")
}

// floodDaemon starts the real daemon as a responder with extra daemon
// settings, and returns it with its IKE port.
func floodDaemon(t *testing.T, daemonExtra string) (*procDaemon, int) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "k.psk"), []byte(floodPSK), 0o600))
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	sock := filepath.Join(dir, "kp.sock")
	conf := filepath.Join(dir, "kp.conf")
	text := fmt.Sprintf(floodRespConf, sock, ports[0], ports[1])
	text = strings.Replace(text, "\tlog_level = info\n", "\tlog_level = info\n"+daemonExtra, 1)
	require.NoError(t, os.WriteFile(conf, []byte(text), 0o644))
	return startProcDaemonConf(t, conf, sock), ports[0]
}

func (d *procDaemon) halfOpen(t *testing.T) int {
	t.Helper()
	r, err := d.do(10*time.Second, "ike-list")
	require.NoError(t, err)
	n := 0
	for _, sa := range r.IKESAs {
		if sa.State == "half-open" {
			n++
		}
	}
	return n
}

// exchange sends b from c to port and returns the answer (nil: none in
// wait).
func exchange(t *testing.T, c *net.UDPConn, port int, b []byte, wait time.Duration) *message.Message {
	t.Helper()
	_, err := c.WriteToUDP(b, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	m, err := message.Parse(buf[:n])
	require.NoError(t, err)
	return m
}

func udpFrom(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// The probe "1,000 such INITs padded with 60 KB vendor IDs: +108 MB (the
// whole INIT is kept)", against the real daemon with the per-source and
// total limits off, so that only the size cap stands in the way.
func TestDaemonPaddedInits(t *testing.T) {
	d, port := floodDaemon(t, "\tblock_threshold = 0\n\tcookie_threshold_ip = 0\n\tcookie_threshold = 0\n\tinit_limit_half_open = 0\n")
	before := d.rssKB(t)
	c := udpFrom(t)
	vid := &message.VendorID{Data: make([]byte, 60*1024)}
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	for i := range 1000 {
		_, err := c.WriteToUDP(ikeprobe.InitRequest(ikeprobe.RandSPI(), ikeprobe.RandNonce(), nil, vid), to)
		require.NoError(t, err)
		if i%2 == 1 {
			time.Sleep(500 * time.Microsecond) // loopback's socket buffer holds 3 of them
		}
	}
	time.Sleep(500 * time.Millisecond)
	after := d.rssKB(t)
	n := d.halfOpen(t)
	t.Logf("1,000 IKE_SA_INIT requests of 61 KB: %d half-open SAs; RSS %.1f -> %.1f MB (%+.1f MB)",
		n, float64(before)/1024, float64(after)/1024, float64(after-before)/1024)
	assert.Zero(t, n, "half-open SAs from requests over max_packet")
	checkRSSGrowth(t, after-before)
	// Under max_packet a request is answered.
	a := exchange(t, c, port, ikeprobe.InitRequest(ikeprobe.RandSPI(), ikeprobe.RandNonce(), nil, &message.VendorID{Data: make([]byte, 9000)}), 3*time.Second)
	require.NotNil(t, a)
	assert.NotNil(t, a.Find(message.PayloadSA))
}

// The probe "one captured INIT carrying a valid COOKIE, replayed from 50
// other source ports: 50 new half-open SAs", against the real daemon.
func TestDaemonCookieReplay(t *testing.T) {
	d, port := floodDaemon(t, "\tcookie_threshold = 1\n")
	// One half-open SA: from now on a COOKIE is needed.
	a := exchange(t, udpFrom(t), port, ikeprobe.InitRequest(ikeprobe.RandSPI(), ikeprobe.RandNonce(), nil), 3*time.Second)
	require.NotNil(t, a)
	require.NotNil(t, a.Find(message.PayloadSA))
	victim := udpFrom(t)
	spii, ni := ikeprobe.RandSPI(), ikeprobe.RandNonce()
	a = exchange(t, victim, port, ikeprobe.InitRequest(spii, ni, nil), 3*time.Second)
	require.NotNil(t, a)
	cookie := a.Notify(message.COOKIE)
	require.NotNil(t, cookie, "a COOKIE is demanded")
	captured := ikeprobe.InitRequest(spii, ni, cookie.Data)
	a = exchange(t, victim, port, captured, 3*time.Second)
	require.NotNil(t, a)
	require.NotNil(t, a.Find(message.PayloadSA), "answered with its COOKIE")
	require.Equal(t, 2, d.halfOpen(t))
	for range 50 {
		exchange(t, udpFrom(t), port, captured, 500*time.Millisecond)
	}
	n := d.halfOpen(t)
	t.Logf("one request with a valid COOKIE replayed from 50 other ports: %d half-open SAs (2 before)", n)
	assert.Equal(t, 2, n)
}
