package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/etcdtest"
	"github.com/keyplane/keyplane/internal/testpki"
	"github.com/keyplane/keyplane/kernelops"
)

const haPSK = "a shared secret for the daemon HA test"

// haGatewayConf is one gateway of the pair: both share the connection
// (same address and ports: only the active one binds them) and differ in
// their node name and control socket.
func haGatewayConf(sock, metrics, node, endpoint string, tlsf etcdtest.TLSFiles, key, psk string, p []uint16) string {
	return fmt.Sprintf(`daemon {
	control = %s
	metrics = %s
	log_level = debug
}
backend {
	name = nokernel
	params {
		interfaces = kpsim0=192.0.2.1/24
	}
}
ha {
	node = %s
	endpoints = %s
	tls {
		ca = %s
		cert = %s
		key = %s
	}
	vip = 192.0.2.10/24
	interface = kpsim0
	cluster_key = %s
	lease_ttl = 2s
	sync_packets = 10
	sync_interval = 100ms
}
connections {
	gw {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519
		psk_file = %s
		local {
			id = gw.example.org
		}
		remote {
			id = peer.example.org
		}
		children {
			net {
				local_ts = 10.1.0.0/16
				remote_ts = 10.2.0.0/16
				esp_proposals = aes128gcm16
				start_action = none
			}
		}
	}
}
`, sock, metrics, node, endpoint, tlsf.CA, tlsf.Cert, tlsf.Key, key, p[0], p[1], p[2], p[3], psk)
}

// haPeer is the remote peer: an engine in this process on nokernel.
func haPeer(t *testing.T, p []uint16) *ike.Engine {
	src := fmt.Sprintf(`
daemon {
	retransmit_timeout = 500ms
	retransmit_tries = 4
	retransmit_base = 1.8
}
connections {
	gw {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519
		psk_env = PSK
		dpd_delay = 300ms
		local {
			id = peer.example.org
		}
		remote {
			id = gw.example.org
		}
		children {
			net {
				local_ts = 10.2.0.0/16
				remote_ts = 10.1.0.0/16
				esp_proposals = aes128gcm16
				start_action = none
			}
		}
	}
}
`, p[2], p[3], p[0], p[1])
	cfg, err := config.Parse("peer.conf", []byte(src), config.Options{Getenv: func(string) (string, bool) { return haPSK, true }})
	require.NoError(t, err)
	nk, err := nokernel.Open(t.Context(), kernelops.Options{IdleScanInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { nk.Close() })
	e, err := ike.New(t.Context(), ike.Options{Backend: nk, Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

// etcdWithTLS starts etcd with TLS and client certificate authentication
// on certificates made here (one for the server and the clients).
func etcdWithTLS(t *testing.T) (*etcdtest.Server, etcdtest.TLSFiles) {
	dir := t.TempDir()
	ca := testpki.Issue(t, testpki.Spec{CN: "etcd test CA", Kind: "p256", CA: true}, nil)
	leaf := testpki.Issue(t, testpki.Spec{CN: "etcd", Kind: "p256", DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, ca)
	f := etcdtest.TLSFiles{
		CA:   testpki.Write(t, dir, "ca.pem", testpki.CertPEM(ca.X509)),
		Cert: testpki.Write(t, dir, "etcd.pem", testpki.CertPEM(leaf.X509)),
		Key:  testpki.Write(t, dir, "etcd.key", testpki.KeyPEM(t, leaf.Key)),
	}
	return etcdtest.StartTLS(t, f), f
}

func haStatusOf(t *testing.T, d *procDaemon) (haStatus, error) {
	// Up to the TTL while etcd is down (a new lease is being asked
	// for), then 2s for etcd's answers; more under load.
	r, err := d.do(15*time.Second, "ha-status")
	if err != nil {
		return haStatus{}, err
	}
	var st haStatus
	require.NoError(t, json.Unmarshal(r.Data, &st))
	return st, nil
}

func waitRole(t *testing.T, d *procDaemon, role string, limit time.Duration) haStatus {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st, err := haStatusOf(t, d)
		if err == nil && st.Role == role {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %v (last: %+v, %v):\n%s", role, limit, st, err, tailText(d.stderr.String(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func oneIKESA(t *testing.T, e *ike.Engine) ike.IKESAInfo {
	sas, err := e.IKESAs(etcdtest.Ctx(t))
	require.NoError(t, err)
	require.Len(t, sas, 1, "IKE SAs: %+v", sas)
	return sas[0]
}

// TestDaemonHAFailover: two keyplane daemons (processes, nokernel) share
// a connection through a real etcd spoken to over TLS with client
// certificates. The first to start is active and holds the VIP; the
// second is standby (binds nothing: the connection's port stays the
// active one's) and mirrors. The peer establishes with the active, which
// is killed (SIGKILL); the standby takes over the same IKE and child SAs:
// the peer's liveness checks are answered, it makes no new IKE SA, and a
// child rekey succeeds. The killed node, restarted, joins as standby; a
// SIGTERM of the active hands over to it the same way.
// haPair writes the two gateways' files next to a TLS etcd.
type haPair struct {
	srv                        *etcdtest.Server
	p                          []uint16
	aConf, aSock, bConf, bSock string
	metrics                    map[string]string // by node: the metrics address
}

func newHAPair(t *testing.T) *haPair {
	srv, tlsf := etcdWithTLS(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	require.NoError(t, os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600))
	psk := filepath.Join(dir, "k.psk")
	require.NoError(t, os.WriteFile(psk, []byte(haPSK), 0o600))
	p := make([]uint16, 4)
	ports, err := freeUDPPorts(4)
	require.NoError(t, err)
	for i := range p {
		p[i] = uint16(ports[i])
	}
	hp := &haPair{srv: srv, p: p, metrics: map[string]string{}}
	conf := func(node string) (string, string) {
		sock, file := filepath.Join(dir, node+".sock"), filepath.Join(dir, node+".conf")
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		hp.metrics[node] = l.Addr().String()
		l.Close()
		require.NoError(t, os.WriteFile(file, []byte(haGatewayConf(sock, hp.metrics[node], node, srv.Endpoint(), tlsf, key, psk, p)), 0o644))
		return file, sock
	}
	hp.aConf, hp.aSock = conf("a")
	hp.bConf, hp.bSock = conf("b")
	return hp
}

func TestDaemonHAFailover(t *testing.T) {
	hp := newHAPair(t)
	p, aConf, aSock, bConf, bSock := hp.p, hp.aConf, hp.aSock, hp.bConf, hp.bSock

	a := startProcDaemonConf(t, aConf, aSock)
	st := waitRole(t, a, roleActive, 10*time.Second)
	assert.Contains(t, scrape(t, hp.metrics["a"]), `keyplane_ha_role{role="active"} 1`)
	assert.Equal(t, "a", st.Leader)
	assert.True(t, st.VIPHeld, "the active holds the VIP")
	b := startProcDaemonConf(t, bConf, bSock)
	st = waitRole(t, b, roleStandby, 5*time.Second)
	assert.Equal(t, "a", st.Leader)
	assert.False(t, st.VIPHeld)
	assert.Greater(t, st.LeaseRemaining, int64(0), "lease time left")

	c := haPeer(t, p)
	require.NoError(t, c.Initiate(etcdtest.Ctx(t), "net"))
	before := oneIKESA(t, c)
	require.Len(t, before.Children, 1)
	// The standby's mirror gets the IKE SA and its child.
	require.Eventually(t, func() bool {
		st, err := haStatusOf(t, b)
		return err == nil && st.RecordsMirrored >= 2 && st.LagRevisions == 0
	}, 10*time.Second, 20*time.Millisecond, "the standby did not mirror the SAs")
	time.Sleep(time.Second) // liveness checks under A: the message IDs move
	stA, err := haStatusOf(t, a)
	require.NoError(t, err)
	t.Logf("active before the kill: %d etcd writes, %d pending, %d counter syncs", stA.Writes, stA.Pending, stA.CounterSyncs)

	killed := time.Now()
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
	<-a.done
	st = waitRole(t, b, roleActive, 15*time.Second)
	took := time.Since(killed)
	require.NotNil(t, st.Takeover)
	t.Logf("kill -9 to active: %v (lease expiry and election, then restore %v: %d IKE SAs, %d children; %s)",
		took.Round(time.Millisecond), st.Takeover.Took, st.Takeover.IKESAs, st.Takeover.Children, st.Takeover.GARP)
	assert.Equal(t, 1, st.Takeover.IKESAs)
	assert.Equal(t, 1, st.Takeover.Children)
	assert.Empty(t, st.Takeover.Failed)
	assert.True(t, st.VIPHeld)
	assert.Equal(t, "b", st.Leader)
	m := scrape(t, hp.metrics["b"])
	assert.Contains(t, m, `keyplane_ha_role{role="active"} 1`)
	assert.Contains(t, m, `keyplane_ha_role{role="standby"} 0`)
	assert.Regexp(t, `keyplane_ha_records_mirrored [1-9]`, m)
	assert.Regexp(t, `keyplane_ha_takeover_seconds [0-9]\.[0-9]*[1-9]`, m, "the takeover's time")
	assert.Contains(t, m, "keyplane_ha_etcd_writes_total")
	assert.Contains(t, m, "keyplane_ha_counter_syncs_total")
	assert.Regexp(t, `keyplane_ha_records_pending [0-9]`, m)
	assert.Contains(t, m, "keyplane_ha_mirror_revision 0")

	// B answers the peer at the same SPIs: its liveness checks go on
	// (C's message IDs rise) and no new IKE SA is made.
	time.Sleep(2 * time.Second)
	after := oneIKESA(t, c)
	assert.Equal(t, ike.IKEEstablished, after.State)
	assert.Equal(t, before.SPIi, after.SPIi, "the peer made a new IKE SA")
	assert.Equal(t, before.SPIr, after.SPIr)
	r, err := b.do(5*time.Second, "ike-list")
	require.NoError(t, err)
	require.Len(t, r.IKESAs, 1)
	assert.Equal(t, before.SPIi, r.IKESAs[0].SPIi)
	require.Len(t, r.IKESAs[0].Children, 1)
	assert.Equal(t, before.Children[0].SPIIn, r.IKESAs[0].Children[0].SPIOut)

	// Traffic leaves through the restored child (nokernel's simulated
	// packets).
	code, out, errs := runCLI(t, "traffic", "-child", "net", "-dir", "out", "-s", bSock)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "10 protected", "through the restored child")
	// A child rekey from the peer succeeds on B.
	require.NoError(t, c.Rekey(etcdtest.Ctx(t), "net"))
	require.Eventually(t, func() bool {
		sas, err := c.IKESAs(etcdtest.Ctx(t))
		return err == nil && len(sas) == 1 && len(sas[0].Children) == 1 && sas[0].Children[0].State == "installed" &&
			sas[0].Children[0].SPIIn != before.Children[0].SPIIn
	}, 10*time.Second, 20*time.Millisecond, "the peer's child was not rekeyed")
	assert.Equal(t, before.SPIi, oneIKESA(t, c).SPIi)
	time.Sleep(500 * time.Millisecond)
	code, out, errs = runCLI(t, "traffic", "-child", "net", "-dir", "out", "-s", bSock)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "10 protected", "through the rekeyed child")

	// A comes back as standby.
	a = startProcDaemonConf(t, aConf, aSock)
	st = waitRole(t, a, roleStandby, 5*time.Second)
	assert.Equal(t, "b", st.Leader)
	assert.False(t, st.VIPHeld)
	require.Eventually(t, func() bool {
		st, err := haStatusOf(t, a)
		return err == nil && st.RecordsMirrored >= 2 && st.LagRevisions == 0
	}, 10*time.Second, 20*time.Millisecond, "the restarted node did not mirror")

	// A reload on the standby is applied (to the configuration its
	// takeover will use; its engine stays without connections).
	code, out, errs = runCLI(t, "reload", "-s", aSock)
	require.Equal(t, 0, code, errs)
	st, err = haStatusOf(t, a)
	require.NoError(t, err)
	assert.Equal(t, roleStandby, st.Role)
	r, err = a.do(5*time.Second, "ike-list")
	require.NoError(t, err)
	assert.Empty(t, r.IKESAs, "the standby's engine holds no SA")

	// SIGTERM on B hands over: A takes over at once (the lease is
	// revoked), the peer keeps its IKE SA.
	stopped := time.Now()
	require.NoError(t, b.stop(t))
	st = waitRole(t, a, roleActive, 10*time.Second)
	t.Logf("SIGTERM to active: %v (restore %v)", time.Since(stopped).Round(time.Millisecond), st.Takeover.Took)
	assert.Equal(t, 1, st.Takeover.IKESAs)
	time.Sleep(time.Second)
	final := oneIKESA(t, c)
	assert.Equal(t, ike.IKEEstablished, final.State)
	assert.Equal(t, before.SPIi, final.SPIi, "the peer made a new IKE SA after the handover")

	code, out, errs = runCLI(t, "ha", "status", "-s", aSock)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "role       active")
	assert.Contains(t, out, "leader     a")
	code, out, errs = runCLI(t, "ha", "status", "-json", "-s", aSock)
	require.Equal(t, 0, code, errs)
	var js haStatus
	require.NoError(t, json.Unmarshal([]byte(out), &js))
	assert.Equal(t, "active", js.Role)
	require.NoError(t, a.stop(t))
}

// TestDaemonHAEtcdDown: etcd stopped for longer than the lease TTL. The
// active node keeps its tunnel (the peer's liveness checks answered, its
// IKE SA the same) and the standby does not take over while etcd is
// down. Once etcd is back exactly one node leads; if it is the standby,
// the old active has exited with the leadership lost.
func TestDaemonHAEtcdDown(t *testing.T) {
	hp := newHAPair(t)
	a := startProcDaemonConf(t, hp.aConf, hp.aSock)
	waitRole(t, a, roleActive, 10*time.Second)
	b := startProcDaemonConf(t, hp.bConf, hp.bSock)
	waitRole(t, b, roleStandby, 5*time.Second)
	c := haPeer(t, hp.p)
	require.NoError(t, c.Initiate(etcdtest.Ctx(t), "net"))
	before := oneIKESA(t, c)

	hp.srv.Stop()
	time.Sleep(2*time.Second + 3*time.Second) // the TTL, and then some
	stA, err := haStatusOf(t, a)
	require.NoError(t, err)
	assert.Equal(t, roleActive, stA.Role, "the active node keeps running")
	assert.False(t, stA.Leading, "its lease is lost as far as it knows")
	assert.True(t, stA.VIPHeld)
	stB, err := haStatusOf(t, b)
	require.NoError(t, err)
	assert.Equal(t, roleStandby, stB.Role, "the standby took over with etcd down")
	mid := oneIKESA(t, c)
	assert.Equal(t, ike.IKEEstablished, mid.State)
	assert.Equal(t, before.SPIi, mid.SPIi)

	hp.srv.Restart()
	// Either node may win the next election: both campaigned while etcd
	// was down. The other steps down (the old active, once etcd names
	// another leader) or gives up a takeover it cannot complete and
	// exits. A standby that wins waits for the old active, on this host,
	// to let go of the IKE port (takeoverBindWait): without that wait a
	// fresh-machine run once ended with neither node leading.
	active := func(d *procDaemon) bool {
		select {
		case <-d.done:
			return false
		default:
		}
		st, err := haStatusOf(t, d)
		return err == nil && st.Role == roleActive && st.Leading
	}
	quiet := func(d *procDaemon) bool {
		select {
		case <-d.done:
			return d.err != nil && strings.Contains(d.stderr.String(), "leadership lost")
		default:
		}
		st, err := haStatusOf(t, d)
		return err == nil && st.Role == roleStandby
	}
	var leader string
	assert.Eventually(t, func() bool {
		switch {
		case active(a) && quiet(b):
			leader = "a"
		case active(b) && quiet(a):
			leader = "b"
		}
		return leader != ""
	}, 30*time.Second, 50*time.Millisecond, "no single leader after etcd came back")
	if t.Failed() {
		stA, errA := haStatusOf(t, a)
		stB, errB := haStatusOf(t, b)
		t.Logf("a: %+v %v\n%s\nb: %+v %v\n%s", stA, errA, tailText(a.stderr.String(), 30), stB, errB, tailText(b.stderr.String(), 30))
	}
	t.Logf("after etcd came back, %s leads", leader)
	time.Sleep(time.Second)
	after := oneIKESA(t, c)
	assert.Equal(t, ike.IKEEstablished, after.State)
	assert.Equal(t, before.SPIi, after.SPIi, "the peer made a new IKE SA")
}

func scrape(t *testing.T, addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(t, err)
	// Only the HA series: failures quote what is returned.
	var ha []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(l, "keyplane_ha_") {
			ha = append(ha, l)
		}
	}
	return strings.Join(ha, "\n")
}
