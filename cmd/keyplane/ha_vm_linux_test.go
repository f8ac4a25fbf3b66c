//go:build linux && !no_xfrm

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/internal/etcdtest"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
)

const haVMPSK = "keyplane HA failover test key"

// haVMConf is one gateway on the XFRM backend in its namespace: the VIP
// 10.99.0.10 on seg0, the connection from the VIP to charon.
func haVMConf(sock, node, ns, endpoint, key, psk string) string {
	return fmt.Sprintf(`daemon {
	control = %s
}
backend {
	name = xfrm
	params {
		netns = %s
	}
}
ha {
	node = %s
	endpoints = %s
	vip = 10.99.0.10/24
	interface = seg0
	cluster_key = %s
	lease_ttl = 2s
	sync_packets = 100
	sync_interval = 200ms
}
connections {
	gw {
		local_addrs = 10.99.0.10
		remote_addrs = 10.99.0.100
		proposals = aes128gcm16-prfsha256-x25519
		psk_file = %s
		local {
			id = gw.keyplane.test
		}
		remote {
			id = peer.keyplane.test
		}
		children {
			net {
				local_ts = 10.10.1.0/24
				remote_ts = 10.10.2.0/24
				esp_proposals = aes128gcm16
				start_action = none
			}
		}
	}
}
`, sock, ns, node, endpoint, key, psk)
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// TestVMHAFailover: two keyplane daemons (XFRM, each in its own network
// namespace) on one Ethernet segment (a bridge in charon's namespace)
// share the VIP 10.99.0.10 through etcd (started in the guest); charon
// is the remote peer. A ping every 10 ms runs through the tunnel while
// the active daemon is killed with SIGKILL: the standby takes over the
// VIP (gratuitous ARP) and the SAs. The test reports the pings lost and
// the time to takeover, checks that charon's IKE and child SPIs are
// unchanged with no new IKE_SA_INIT, that charon's liveness check is
// answered and a child rekey succeeds afterwards, and that the killed
// daemon, restarted, comes back as standby.
func TestVMHAFailover(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	if err := swan.Available(); err != nil {
		t.Fatalf("the VM lab has strongSwan (make lab-prepare): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	g1, g2, c := lab.NewNS(t), lab.NewNS(t), lab.NewNS(t)
	c.Exec(t, "ip", "link", "add", "br0", "type", "bridge")
	c.Exec(t, "ip", "addr", "add", "10.99.0.100/24", "dev", "br0")
	c.Exec(t, "ip", "link", "set", "br0", "up")
	c.Exec(t, "ip", "addr", "add", "10.10.2.1/32", "dev", "lo")
	c.Exec(t, "ip", "route", "add", "10.10.1.0/24", "via", "10.99.0.10")
	for i, g := range []*lab.NS{g1, g2} {
		port := fmt.Sprintf("port%d", i+1)
		g.Exec(t, "ip", "link", "add", "seg0", "type", "veth", "peer", "name", port, "netns", c.Name)
		g.Exec(t, "ip", "addr", "add", fmt.Sprintf("10.99.0.%d/24", i+1), "dev", "seg0")
		g.Exec(t, "ip", "link", "set", "seg0", "up")
		g.Exec(t, "ip", "addr", "add", "10.10.1.1/32", "dev", "lo")
		g.Exec(t, "ip", "route", "add", "10.10.2.0/24", "via", "10.99.0.100")
		c.Exec(t, "ip", "link", "set", port, "master", "br0")
		c.Exec(t, "ip", "link", "set", port, "up")
	}
	srv := etcdtest.Start(t)
	ch := swan.Start(t, swan.Options{NS: c, Mode: swan.KernelNetlink, LogLevel: 1, Conns: []swan.Conn{{
		Name: "ha", PSK: haVMPSK, IKEProposal: "aes128gcm16-prfsha256-x25519", ESPProposal: "aes128gcm16",
		LocalID: "peer.keyplane.test", RemoteID: "gw.keyplane.test", Local: "10.99.0.100", Remote: "10.99.0.10",
		LocalTS: []string{"10.10.2.0/24"}, RemoteTS: []string{"10.10.1.0/24"},
		Extra: map[string]string{"dpd_delay": "2s"}}}})

	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	require.NoError(t, os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600))
	psk := filepath.Join(dir, "k.psk")
	require.NoError(t, os.WriteFile(psk, []byte(haVMPSK), 0o600))
	conf := func(node string, ns *lab.NS) (string, string) {
		sock, file := filepath.Join(dir, node+".sock"), filepath.Join(dir, node+".conf")
		require.NoError(t, os.WriteFile(file, []byte(haVMConf(sock, node, ns.Name, srv.Endpoint(), key, psk)), 0o644))
		return file, sock
	}
	aConf, aSock := conf("g1", g1)
	bConf, bSock := conf("g2", g2)
	a := startProcDaemonConf(t, aConf, aSock)
	waitRole(t, a, roleActive, 30*time.Second)
	b := startProcDaemonConf(t, bConf, bSock)
	waitRole(t, b, roleStandby, 30*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("g1 log tail:\n%s\ng2 log tail:\n%s", tailText(a.stderr.String(), 40), tailText(b.stderr.String(), 40))
		}
	})
	hasVIP := func(ns *lab.NS) bool {
		return strings.Contains(ns.Exec(t, "ip", "-4", "addr", "show", "dev", "seg0"), "10.99.0.10/24")
	}
	require.True(t, hasVIP(g1), "the active holds the VIP")
	require.False(t, hasVIP(g2), "the standby holds the VIP")

	require.NoError(t, ch.Initiate(ctx, "ha"))
	before, beforeChild, err := ch.WaitChild(ctx, "ha", "INSTALLED")
	require.NoError(t, err)
	initsBefore := strings.Count(ch.Log(), "IKE_SA_INIT")
	require.Positive(t, initsBefore, "charon logs its IKE_SA_INIT (log level 1)")
	_, err = c.Run("ping", "-c", "3", "-W", "2", "-I", "10.10.2.1", "10.10.1.1")
	require.NoError(t, err, "ping through the tunnel before the failover")
	require.Eventually(t, func() bool {
		st, err := haStatusOf(t, b)
		return err == nil && st.RecordsMirrored >= 2 && st.LagRevisions == 0
	}, 30*time.Second, 50*time.Millisecond, "the standby did not mirror the SAs")

	// A ping every 10 ms through the tunnel for the whole failover.
	const pingFor = 25 * time.Second
	ping := c.Command("ping", "-i", "0.01", "-W", "1", "-w", strconv.Itoa(int(pingFor/time.Second)), "-I", "10.10.2.1", "10.10.1.1")
	var pingOut syncBuffer
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	require.NoError(t, ping.Start())
	pingDone := make(chan error, 1)
	go func() { pingDone <- ping.Wait() }()
	t.Cleanup(func() { _ = ping.Process.Kill() })
	// etcd load under this steady traffic: the writes over 3s.
	st0, err := haStatusOf(t, a)
	require.NoError(t, err)
	t0 := time.Now()
	time.Sleep(3 * time.Second)
	stA, err := haStatusOf(t, a)
	require.NoError(t, err)
	secs := time.Since(t0).Seconds()
	t.Logf("active before the kill: %d etcd writes, %d counter syncs; under the ping: %.1f etcd writes/s (%.1f counter syncs/s)",
		stA.Writes, stA.CounterSyncs, float64(stA.Writes-st0.Writes)/secs, float64(stA.CounterSyncs-st0.CounterSyncs)/secs)
	assert.Greater(t, stA.CounterSyncs, st0.CounterSyncs, "the traffic's sync events were written")

	// The active node dies: its daemon is killed (SIGKILL) and its link
	// goes down at once. kill -9 alone would leave the daemon's kernel
	// state (SAs, policies, the VIP) forwarding on g1.
	killed := time.Now()
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
	g1.Exec(t, "ip", "link", "set", "seg0", "down")
	<-a.done
	st := waitRole(t, b, roleActive, 30*time.Second)
	took := time.Since(killed)
	require.NotNil(t, st.Takeover)
	assert.Equal(t, 1, st.Takeover.IKESAs)
	assert.Equal(t, 1, st.Takeover.Children)
	assert.Empty(t, st.Takeover.Failed)
	assert.True(t, hasVIP(g2), "the new active holds the VIP")
	select {
	case err := <-pingDone:
		if err != nil {
			t.Logf("ping: %v", err) // exit 1: some pings lost
		}
	case <-time.After(pingFor + 10*time.Second):
		t.Fatal("ping did not end")
	}
	m := pingSummary.FindStringSubmatch(pingOut.String())
	require.NotNil(t, m, "ping summary: %s", pingOut.String())
	sent, _ := strconv.Atoi(m[1])
	got, _ := strconv.Atoi(m[2])
	// Under emulation ping sends less often than asked: the outage is
	// the pings lost times the interval it achieved.
	every := pingFor / time.Duration(max(sent, 1))
	t.Logf("failover: kill -9 to the standby being active %v (restore %v: %d IKE SA, %d child; %s); pings asked every 10 ms, sent every %v: %d sent, %d answered, %d lost (about %v without traffic)",
		took.Round(time.Millisecond), st.Takeover.Took, st.Takeover.IKESAs, st.Takeover.Children, st.Takeover.GARP,
		every.Round(100*time.Microsecond), sent, got, sent-got, (time.Duration(sent-got) * every).Round(time.Millisecond))
	assert.Contains(t, st.Takeover.GARP, "gratuitous ARP sent")
	// Lost: those in flight while the lease ran out and the takeover
	// ran; bounded by the TTL plus the restore and a margin.
	assert.Less(t, time.Duration(sent-got)*every, took+2*time.Second, "pings lost beyond the takeover")
	assert.Greater(t, got, sent/2, "the tunnel did not carry traffic after the takeover")

	after, afterChild, err := ch.WaitChild(ctx, "ha", "INSTALLED")
	require.NoError(t, err)
	assert.Equal(t, before.LocalSPI, after.LocalSPI, "charon's IKE SA changed")
	assert.Equal(t, before.RemoteSPI, after.RemoteSPI)
	assert.Equal(t, beforeChild.SPIIn, afterChild.SPIIn, "charon's child changed")
	assert.Equal(t, beforeChild.SPIOut, afterChild.SPIOut)
	assert.Equal(t, initsBefore, strings.Count(ch.Log(), "IKE_SA_INIT"), "charon saw a new IKE_SA_INIT")

	// charon's liveness check (dpd_delay 2s, no traffic now) is answered
	// by the new active.
	dpds := strings.Count(ch.Log(), "parsed INFORMATIONAL response")
	require.Eventually(t, func() bool { return strings.Count(ch.Log(), "parsed INFORMATIONAL response") > dpds },
		20*time.Second, 100*time.Millisecond, "charon's liveness check was not answered:\n%s", tailText(ch.Log(), 30))
	// A child rekey from charon succeeds, and traffic flows on it.
	require.NoError(t, ch.RekeyChild(ctx, "ha"))
	require.Eventually(t, func() bool {
		sas, err := ch.ListSAs(ctx)
		if err != nil || len(sas) != 1 {
			return false
		}
		for _, cs := range sas[0].Children {
			if cs.State == "INSTALLED" && cs.SPIIn != beforeChild.SPIIn {
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "charon's child rekey did not complete")
	_, err = c.Run("ping", "-c", "3", "-W", "2", "-I", "10.10.2.1", "10.10.1.1")
	assert.NoError(t, err, "ping after the rekey")
	sas, err := ch.ListSAs(ctx)
	require.NoError(t, err)
	require.Len(t, sas, 1)
	assert.Equal(t, before.LocalSPI, sas[0].LocalSPI)

	// The killed one, restarted, is standby: it removes the VIP its
	// killed run left, and its link comes back.
	a = startProcDaemonConf(t, aConf, aSock)
	st = waitRole(t, a, roleStandby, 30*time.Second)
	assert.Equal(t, "g2", st.Leader)
	assert.False(t, hasVIP(g1), "the restarted node kept the VIP")
	g1.Exec(t, "ip", "link", "set", "seg0", "up")
	assert.True(t, hasVIP(g2))
	_, err = c.Run("ping", "-c", "3", "-W", "2", "-I", "10.10.2.1", "10.10.1.1")
	assert.NoError(t, err, "ping with the old active back as standby")
	require.NoError(t, a.stop(t))
	require.NoError(t, b.stop(t))
	assert.False(t, hasVIP(g2), "the stopped active left the VIP")
}
