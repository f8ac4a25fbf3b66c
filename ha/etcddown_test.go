package ha

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/internal/etcdtest"
	"github.com/keyplane/keyplane/kernelops"
)

// TestEngineEtcdDown: etcd stops under an active gateway. Its tunnel
// stays up and it keeps answering the peer's liveness checks (the engine
// does not wait on etcd); the standby does not take over; and once the
// active's lease ran out, a child rekey that needs a dataplane write is
// refused by the fence, so the old child stays.
func TestEngineEtcdDown(t *testing.T) {
	srv := etcdtest.Start(t)
	p := udpPorts(t, 4)
	const prefix = "/kp-test/state"
	a := newNode(t, srv, "a")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	aStore := NewStore(a.cli, prefix, sealer(t, 1), a.el, DefaultLimits, nil)
	defer aStore.Close()
	aEng := startEngine(t, "a", engineConfig(t, "gw", "gw.example.org", "peer.example.org", "10.1.0.0/16", "10.2.0.0/16", p[0], p[1], p[2], p[3], ""),
		func(nk *nokernel.Backend) kernelops.Backend { return NewFenced(nk.Handle, a.el) })
	require.NoError(t, aEng.e.SetStateSink(etcdtest.Ctx(t), NewSink(aStore, nil)))
	b := newNode(t, srv, "b")
	won := campaign(t, b)
	cEng := startEngine(t, "c", engineConfig(t, "c", "peer.example.org", "gw.example.org", "10.2.0.0/16", "10.1.0.0/16",
		p[2], p[3], p[0], p[1], "dpd_delay = 300ms"), nil)
	require.NoError(t, cEng.e.Initiate(etcdtest.Ctx(t), "net"))
	before := oneSA(t, cEng.e)

	srv.Stop()
	select {
	case err := <-won:
		t.Fatalf("the standby took over while etcd was down: %v", err)
	case <-time.After(testTTL + 2*time.Second):
	}
	assert.False(t, a.el.Leading(), "the active still counts itself leader past its lease")
	// Liveness checks went on all along: C's SA is the same one.
	after := oneSA(t, cEng.e)
	assert.Equal(t, ike.IKEEstablished, after.State)
	assert.Equal(t, before.SPIi, after.SPIi)
	// The store's first write after the stop can wait out its 5 s etcd
	// timeout before it fails (the client waits for the connection), past
	// the wait above: read the failure once it is in.
	require.Eventually(t, func() bool { return aStore.Err() != nil }, 10*time.Second, 50*time.Millisecond,
		"the active's state writes fail while etcd is down")

	// A child rekey needs new SAs in A's dataplane: fenced.
	require.NoError(t, cEng.e.Rekey(etcdtest.Ctx(t), "net"))
	time.Sleep(time.Second)
	asas := oneSA(t, aEng.e)
	require.Len(t, asas.Children, 1)
	assert.Equal(t, before.Children[0].SPIIn, asas.Children[0].SPIOut, "A installed a rekeyed child without the lease")
	n := 0
	for _, err := range aEng.nk.SAs(etcdtest.Ctx(t)) {
		require.NoError(t, err)
		n++
	}
	assert.Equal(t, 2, n, "A's dataplane holds only the first child's two SAs")
}
