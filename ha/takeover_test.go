package ha

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/etcdtest"
	"github.com/keyplane/keyplane/kernelops"
)

func udpPorts(t *testing.T, n int) []uint16 {
	var out []uint16
	var conns []net.PacketConn
	for range n {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		conns = append(conns, c)
		out = append(out, uint16(c.LocalAddr().(*net.UDPAddr).Port))
	}
	for _, c := range conns {
		c.Close()
	}
	return out
}

// engineConfig is one end of the test's tunnel on 127.0.0.1.
func engineConfig(t *testing.T, name, id, remoteID, lts, rts string, port, nat, rport, rnat uint16, extra string) *config.Config {
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
		%s
		local {
			id = %s
		}
		remote {
			id = %s
		}
		children {
			net {
				local_ts = %s
				remote_ts = %s
				esp_proposals = aes128gcm16
				start_action = none
			}
		}
	}
}
`, port, nat, rport, rnat, extra, id, remoteID, lts, rts)
	cfg, err := config.Parse(name+".conf", []byte(src), config.Options{Getenv: func(k string) (string, bool) {
		return "a shared secret for the HA test", k == "PSK"
	}})
	require.NoError(t, err)
	return cfg
}

type engineNode struct {
	nk *nokernel.Backend
	e  *ike.Engine
}

func startEngine(t *testing.T, name string, cfg *config.Config, wrap func(*nokernel.Backend) kernelops.Backend) *engineNode {
	// Idle scans often enough for liveness checks every 300ms.
	nk, err := nokernel.Open(t.Context(), kernelops.Options{IdleScanInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { nk.Close() })
	var kb kernelops.Backend = nk
	if wrap != nil {
		kb = wrap(nk)
	}
	var w io.Writer = io.Discard
	if os.Getenv("KEYPLANE_TEST_LOG") != "" {
		w = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	e, err := ike.New(t.Context(), ike.Options{Backend: kb, Config: cfg, Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return &engineNode{nk: nk, e: e}
}

func oneSA(t *testing.T, e *ike.Engine) ike.IKESAInfo {
	sas, err := e.IKESAs(etcdtest.Ctx(t))
	require.NoError(t, err)
	require.Len(t, sas, 1, "IKE SAs: %+v", sas)
	return sas[0]
}

// TestEngineTakeover: gateways A and B share one configuration and
// their state through a real etcd; C is the remote peer. A establishes
// with C and is stopped hard; B takes over (binding the address A used)
// from what its mirror holds. C's next liveness checks are answered by
// B at the same SPIs (no new IKE_SA_INIT), and a child rekey succeeds.
func TestEngineTakeover(t *testing.T) { engineTakeover(t, false) }

// TestEngineTakeoverUnsynced: A answers liveness checks whose message
// IDs never reach etcd (its sink is off), as when it dies between an
// answer and its write. B takes over behind the peer's message ID and
// still answers: its window takes the first request past the synced ID.
func TestEngineTakeoverUnsynced(t *testing.T) { engineTakeover(t, true) }

func engineTakeover(t *testing.T, unsynced bool) {
	srv := etcdtest.Start(t)
	p := udpPorts(t, 4)
	gwCfg := func() *config.Config {
		return engineConfig(t, "gw", "gw.example.org", "peer.example.org", "10.1.0.0/16", "10.2.0.0/16", p[0], p[1], p[2], p[3], "")
	}
	const prefix = "/kp-test/state"
	const margin = 1 << 16

	// A leads and writes its state.
	a := newNode(t, srv, "a")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	aStore := NewStore(a.cli, prefix, sealer(t, 1), a.el, DefaultLimits, nil)
	defer aStore.Close()
	aEng := startEngine(t, "a", gwCfg(), func(nk *nokernel.Backend) kernelops.Backend { return NewFenced(nk.Handle, a.el) })
	aCtr, err := NewCounters(etcdtest.Ctx(t), aEng.nk, aStore, kernelops.SyncThresholds{ReplayDiff: 10, Timer: 100 * time.Millisecond}, nil)
	require.NoError(t, err)
	defer aCtr.Close()
	require.NoError(t, aEng.e.SetStateSink(etcdtest.Ctx(t), NewSink(aStore, nil).WithCounters(aCtr)))

	// B is standby: campaigning, mirroring.
	b := newNode(t, srv, "b")
	bMirror, err := NewMirror(etcdtest.Ctx(t), b.cli, prefix, sealer(t, 1), DefaultLimits, nil)
	require.NoError(t, err)
	defer bMirror.Close()
	won := campaign(t, b)

	// C, the peer, initiates to the gateway; it checks liveness every
	// 300ms and gives up on a check after 4 retransmissions (0.5s, then
	// 1.8 times longer each: about 9s, longer than the takeover).
	cEng := startEngine(t, "c", engineConfig(t, "c", "peer.example.org", "gw.example.org", "10.2.0.0/16", "10.1.0.0/16",
		p[2], p[3], p[0], p[1], "dpd_delay = 300ms"), nil)
	require.NoError(t, cEng.e.Initiate(etcdtest.Ctx(t), "net"))
	before := oneSA(t, cEng.e)
	require.Len(t, before.Children, 1)
	require.NoError(t, aStore.Flush(etcdtest.Ctx(t)))
	t.Logf("etcd writes by A for one IKE SA with one child established: %d", aStore.Writes())
	// Traffic through A's tunnel: 25 packets out, synced by the
	// dataplane's events (every 10 packets, or 100ms after a change).
	for range 25 {
		r, err := aEng.nk.Inject(etcdtest.Ctx(t), nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.0.1"),
			Dst: netip.MustParseAddr("10.2.0.1"), Proto: 17, SrcPort: 1000, DstPort: 2000, Len: 100})
		require.NoError(t, err)
		require.Equal(t, nokernel.Protected, r.Verdict, r.Reason)
	}
	// Let a few liveness checks go by under A (message IDs move).
	time.Sleep(time.Second)
	assert.GreaterOrEqual(t, aCtr.Synced(), uint64(2), "sync events written")
	require.NoError(t, aStore.Flush(etcdtest.Ctx(t)))
	t.Logf("etcd writes by A after 25 packets and 1s of liveness checks every 300ms: %d (%d counter syncs)", aStore.Writes(), aCtr.Synced())
	resp, err := a.cli.Get(etcdtest.Ctx(t), prefix, clientv3WithPrefix()...)
	require.NoError(t, err)
	require.NoError(t, bMirror.WaitRev(etcdtest.Ctx(t), resp.Header.Revision))
	require.Equal(t, 3, bMirror.Len(), "the mirror holds the IKE SA, its child and the outbound SA's counters")
	if unsynced {
		require.NoError(t, aEng.e.SetStateSink(etcdtest.Ctx(t), nil))
		time.Sleep(700 * time.Millisecond) // two liveness checks answered by A, unsynced
	}

	// A dies: no resign, no deletes; its etcd client is cut, its engine
	// stops (its sockets close).
	killed := time.Now()
	require.NoError(t, aStore.Close())
	require.NoError(t, a.cli.Close())
	require.NoError(t, aEng.e.Close())

	// B leads once A's lease ran out, then starts its engine on the same
	// address and restores.
	select {
	case err := <-won:
		require.NoError(t, err)
	case <-time.After(testTTL + 6*time.Second):
		t.Fatal("B did not take over")
	}
	elected := time.Now()
	bStore := NewStore(b.cli, prefix, sealer(t, 1), b.el, DefaultLimits, nil)
	defer bStore.Close()
	bEng := startEngine(t, "b", gwCfg(), func(nk *nokernel.Backend) kernelops.Backend { return NewFenced(nk.Handle, b.el) })
	bCtr, err := NewCounters(etcdtest.Ctx(t), bEng.nk, bStore, kernelops.SyncThresholds{ReplayDiff: 10, Timer: 100 * time.Millisecond}, nil)
	require.NoError(t, err)
	defer bCtr.Close()
	require.NoError(t, bEng.e.SetStateSink(etcdtest.Ctx(t), NewSink(bStore, nil).WithCounters(bCtr)))
	childEst := childRecordEst(t, bMirror)
	res := Restore(etcdtest.Ctx(t), bEng.e, bMirror, ike.RestoreOptions{SeqMargin: margin, Replay: ReplayFrom(bMirror)})
	require.Empty(t, res.Failed)
	require.Equal(t, 1, res.IKESAs)
	require.Equal(t, 1, res.Children)
	restored := time.Now()
	t.Logf("takeover: lease expiry and election %v after the kill, engine start and restore %v; total %v",
		elected.Sub(killed), restored.Sub(elected), restored.Sub(killed))

	bsa := oneSA(t, bEng.e)
	assert.Equal(t, before.SPIi, bsa.SPIi)
	assert.Equal(t, before.SPIr, bsa.SPIr)
	require.Len(t, bsa.Children, 1)
	assert.Equal(t, before.Children[0].SPIIn, bsa.Children[0].SPIOut)
	assert.Equal(t, before.Children[0].SPIOut, bsa.Children[0].SPIIn)
	// The outbound SA goes on past the last synced sequence number (all
	// 25: the timer synced the last 5) and the margin.
	var outID kernelops.SAID
	for sa, err := range bEng.nk.SAs(etcdtest.Ctx(t)) {
		require.NoError(t, err)
		if fmt.Sprintf("%08x", sa.SA.ID.SPI) == bsa.Children[0].SPIOut {
			outID = sa.SA.ID
		}
	}
	syncSt, err := bEng.nk.GetSyncState(etcdtest.Ctx(t), outID)
	require.NoError(t, err)
	assert.Equal(t, uint64(25+margin), syncSt.Replay.OSeq)
	// B follows the restored child as its own: the record written again
	// with its first install's time, and its traffic's counters synced
	// (a second failover resumes past them).
	for range 15 {
		r, err := bEng.nk.Inject(etcdtest.Ctx(t), nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.0.1"),
			Dst: netip.MustParseAddr("10.2.0.1"), Proto: 17, SrcPort: 1000, DstPort: 2000, Len: 100})
		require.NoError(t, err)
		require.Equal(t, nokernel.Protected, r.Verdict, r.Reason)
	}
	outSeq := func() uint64 {
		require.NoError(t, bStore.Flush(etcdtest.Ctx(t)))
		resp, err := b.cli.Get(etcdtest.Ctx(t), prefix, clientv3WithPrefix()...)
		require.NoError(t, err)
		require.NoError(t, bMirror.WaitRev(etcdtest.Ctx(t), resp.Header.Revision))
		for _, b := range bMirror.Records("seq/") {
			var r CounterRecord
			require.NoError(t, json.Unmarshal(b, &r))
			if r.SA == outID {
				return r.Replay.OSeq
			}
		}
		return 0
	}
	// The thresholds are set on B's SAs by the counters' goroutine: a
	// packet more each round until one is synced.
	require.Eventually(t, func() bool {
		r, err := bEng.nk.Inject(etcdtest.Ctx(t), nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.0.1"),
			Dst: netip.MustParseAddr("10.2.0.1"), Proto: 17, SrcPort: 1000, DstPort: 2000, Len: 100})
		return err == nil && r.Verdict == nokernel.Protected && outSeq() > 25+margin+15
	}, 5*time.Second, 100*time.Millisecond, "B did not sync the restored child's counters (%d syncs)", bCtr.Synced())
	assert.True(t, childEst.Equal(childRecordEst(t, bMirror)), "the restored child's record lost its install time: %v, was %v",
		childRecordEst(t, bMirror), childEst)

	// C's liveness checks go on: the one A left unanswered is
	// retransmitted and B answers it, and the next ones, at the synced
	// message IDs. B's own record shows the peer's message ID moving.
	startPeerNext := peerNext(t, bMirror, bsa)
	time.Sleep(2 * time.Second)
	after := oneSA(t, cEng.e)
	assert.Equal(t, ike.IKEEstablished, after.State)
	assert.Equal(t, before.SPIi, after.SPIi, "C made a new IKE SA")
	assert.Equal(t, before.SPIr, after.SPIr)
	require.NoError(t, bStore.Flush(etcdtest.Ctx(t)))
	resp, err = b.cli.Get(etcdtest.Ctx(t), prefix, clientv3WithPrefix()...)
	require.NoError(t, err)
	require.NoError(t, bMirror.WaitRev(etcdtest.Ctx(t), resp.Header.Revision))
	endPeerNext := peerNext(t, bMirror, bsa)
	t.Logf("C's requests answered by B: message IDs %d..%d", startPeerNext, endPeerNext)
	assert.Greater(t, endPeerNext, startPeerNext, "B answered no liveness check")

	// A child rekey from C succeeds on B.
	require.NoError(t, cEng.e.Rekey(etcdtest.Ctx(t), "net"))
	require.Eventually(t, func() bool {
		sas, err := cEng.e.IKESAs(etcdtest.Ctx(t))
		if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 {
			return false
		}
		ch := sas[0].Children[0]
		return ch.State == "installed" && ch.SPIIn != before.Children[0].SPIIn
	}, 5*time.Second, 20*time.Millisecond, "C's child was not rekeyed")
	cs := oneSA(t, cEng.e)
	require.Eventually(t, func() bool {
		sas, err := bEng.e.IKESAs(etcdtest.Ctx(t))
		return err == nil && len(sas) == 1 && len(sas[0].Children) == 1 && sas[0].Children[0].SPIIn == cs.Children[0].SPIOut
	}, 5*time.Second, 20*time.Millisecond, "B does not hold the rekeyed child")
	assert.Equal(t, before.SPIi, cs.SPIi)
}

func peerNext(t *testing.T, m *Mirror, sa ike.IKESAInfo) uint32 {
	for _, b := range m.Records("ike/") {
		var st ike.HAIKE
		require.NoError(t, json.Unmarshal(b, &st))
		if fmt.Sprintf("%016x", st.SPIi) == sa.SPIi {
			return st.PeerNext
		}
	}
	t.Fatalf("no record of %s", sa.SPIi)
	return 0
}

func clientv3WithPrefix() []clientv3.OpOption { return []clientv3.OpOption{clientv3.WithPrefix()} }

// childRecordEst is the install time in the one child record m holds.
func childRecordEst(t *testing.T, m *Mirror) time.Time {
	t.Helper()
	recs := slices.Collect(maps.Values(maps.Collect(m.Records("child/"))))
	require.Len(t, recs, 1)
	var cs ike.HAChild
	require.NoError(t, json.Unmarshal(recs[0], &cs))
	return cs.Est
}
